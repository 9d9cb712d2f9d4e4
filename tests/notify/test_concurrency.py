"""Several senders at once, threads and processes, while the channel goes down, refuses connections
and comes back: every failure's message reaches every channel exactly once."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

from emulator.receiver import Receiver
from handler.ledger import open_store
from handler.notify import Outbox

from .conftest import WEBHOOK_SECRET, failure, give_up
from .workers import deliver_until_quiet

MESSAGES = 40


def channel_env(rx: Receiver) -> dict[str, str]:
    return {"AUTORETRY_NOTIFY_WECOM_URL": rx.url("wecom"), "AUTORETRY_NOTIFY_WEBHOOK_URL": rx.url("webhook"),
            "AUTORETRY_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET, "AUTORETRY_NOTIFY_TIMEOUT_S": "10"}


def statuses(rx: Receiver) -> Counter[tuple[int, bool]]:
    return Counter((r.status, r.accepted) for r in rx.requests())


def throttled(answers: Counter[tuple[int, bool]]) -> int:
    # WeCom answers a throttled robot 200 with errcode 45009; the webhook answers 429.
    return answers[(200, False)] + answers[(429, False)]


def flap(rx: Receiver, sending: Callable[[], bool]) -> None:
    """Down (503) until senders have met it ten times, then refusing connections, then throttled
    until senders have met that ten times, then up. A phase ends when what the test asserts of it
    has happened, however slow the machine, or when no sender is left to make it happen. (It used
    to end after 30 s, or after any ten requests: a 503 computed before the switch and recorded
    after it counted as one of the throttled phase's ten.)"""

    def until(done: Callable[[Counter[tuple[int, bool]]], bool]) -> None:
        while not done(statuses(rx)) and sending():
            time.sleep(0.01)

    until(lambda answers: answers[(503, False)] >= 10)
    rx.refuse()
    time.sleep(0.7)
    rx.throttle()
    until(lambda answers: throttled(answers) >= 10)
    rx.up()


def per_job(rx: Receiver, channel: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for r in rx.accepted(channel):
        body = r.json
        text = body["markdown"]["content"] if channel == "wecom" else body["job_id"]
        (job,) = [f"job-{i:08d}" for i in range(MESSAGES) if f"job-{i:08d}" in text]
        counts[job] += 1
    return counts


def assert_exactly_once(rx: Receiver) -> None:
    want = {f"job-{i:08d}": 1 for i in range(MESSAGES)}
    assert per_job(rx, "wecom") == want
    assert per_job(rx, "webhook") == want
    answers = statuses(rx)
    assert answers[(503, False)] >= 10 and throttled(answers) >= 10, answers


def test_concurrent_threads_add_and_send_each_message_exactly_once(store_url: str) -> None:
    with Receiver(webhook_secret=WEBHOOK_SECRET) as rx:
        rx.down()
        env = channel_env(rx)
        added: list[bool] = []
        lock = threading.Lock()

        def add_all(seed: int) -> None:
            # Every failure decided by several instances at once (redeliveries, a sweep, a crash).
            store = open_store(store_url)
            outbox = Outbox(store)
            keys = [failure(i) for i in range(MESSAGES)]
            random.Random(seed).shuffle(keys)
            for k in keys:
                result = outbox.add(k, give_up(k))
                with lock:
                    added.append(result)
            store.close()

        senders = [threading.Thread(target=deliver_until_quiet, args=(store_url, env, 60))
                   for _ in range(5)]
        threads = [threading.Thread(target=add_all, args=(s,)) for s in range(3)] + senders
        for t in threads:
            t.start()
        flap(rx, lambda: any(t.is_alive() for t in senders))
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads)
        assert added.count(True) == MESSAGES and len(added) == 3 * MESSAGES
        assert_exactly_once(rx)


def test_concurrent_processes_send_each_message_exactly_once(store_url: str) -> None:
    store = open_store(store_url)
    outbox = Outbox(store)
    for i in range(MESSAGES):
        assert outbox.add(failure(i), give_up(failure(i)))
    with Receiver(webhook_secret=WEBHOOK_SECRET) as rx:
        rx.down()
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=deliver_until_quiet, args=(store_url, channel_env(rx), 60))
                 for _ in range(3)]
        for p in procs:
            p.start()
        flap(rx, lambda: any(p.is_alive() for p in procs))
        for p in procs:
            p.join(90)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        assert outbox.pending() == 0
        assert_exactly_once(rx)
    store.close()
