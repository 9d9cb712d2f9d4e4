"""Invocations running at once in one process (`serve`'s threads, SCF's per-instance concurrency, a
continuation beside a request) share the instance's parts, and none closes them under another
(issue 29, point 1: pushes raised `ValueError: I/O operation on closed file.` out of
`main_handler` when invocations that started together each built a runtime, and the last one
closed the Redis store the others were reading)."""

from __future__ import annotations

import http.client
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app, continuation
from handler.cmq import QueueClient
from handler.config import Config
from handler.gateway import Credentials
from handler.jobs import JobRef
from handler.observe import Observer
from handler.retrier import Deadline
from handler.tags import TAG_KEY, TagMemory

from ..conftest import CONTINUATION_TIMEOUT_S, SECRET_ID, SECRET_KEY
from ..ledger.conftest import REDIS_URL, delete_redis_prefix, redis_prefix
from ..pushes import failure_push

ROOT = Path(__file__).resolve().parents[2]
INVOCATIONS = 24  # at once, in one process
ROUNDS = 4  # each from a cold instance: the parts are built anew


@pytest.fixture
def redis_ledger(wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The function wired to the emulator, its ledger on the real Redis under a fresh prefix."""
    prefix = redis_prefix()
    url = f"{REDIS_URL}?prefix={prefix}"
    monkeypatch.setenv("AUTORETRY_STORE", url)
    app.reset_runtime()
    yield url
    app.reset_runtime()
    delete_redis_prefix(prefix)


@pytest.fixture
def escaped(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that escape any thread of this process (a continuation's included)."""
    seen: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(f"{args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", hook)
    return seen


def answered(answer: object) -> bool:
    """What a push may be answered: 2xx (taken), or 503 (redeliver later)."""
    if not isinstance(answer, dict):
        return False
    status = answer.get("statusCode")
    return isinstance(status, int) and (200 <= status < 300 or status == 503)


class ColdStart:
    """One round's invocations asking a cold instance for its parts together. The build is held
    until every invocation has passed authentication, the step just before it asks: so each asks
    while the parts are still being built, every round, instead of only when the scheduler
    happens to interleave them."""

    def __init__(self, invocations: int) -> None:
        self.invocations, self.authenticated, self.builds = invocations, 0, 0
        self.everyone_asks = threading.Event()
        self.lock = threading.Lock()


def test_pushes_at_once_on_a_cold_instance_build_one_runtime_and_are_all_answered(
    redis_ledger: str, wired: Emulator, monkeypatch: pytest.MonkeyPatch, escaped: list[str]
) -> None:
    real_build, real_authenticate = app.build_runtime, app.authenticate
    current: list[ColdStart] = []

    def authenticate(*args: Any, **kwargs: Any) -> Any:
        refusal = real_authenticate(*args, **kwargs)
        cold = current[-1]
        with cold.lock:
            cold.authenticated += 1
            if cold.authenticated == cold.invocations:
                cold.everyone_asks.set()
        return refusal

    def build_runtime(config: Config, gateway: Any = None) -> app.Runtime:
        cold = current[-1]
        with cold.lock:
            cold.builds += 1
        cold.everyone_asks.wait(10)  # bounded: a build that never comes fails, not hangs, the test
        return real_build(config, gateway)

    monkeypatch.setattr(app, "authenticate", authenticate)
    monkeypatch.setattr(app, "build_runtime", build_runtime)

    answers: list[object] = []

    def deliver(event: dict[str, Any], start: threading.Barrier) -> None:
        start.wait()
        try:
            answers.append(app.main_handler(event, {"time_limit_in_ms": 15000}))
        except Exception as e:  # a failed delivery: the platform would see an error
            answers.append(f"{type(e).__name__}: {e}")

    jobs: list[str] = []
    for _ in range(ROUNDS):
        pushes = []
        for _ in range(INVOCATIONS):
            jobs.append(wired.add_failed_job(name="together", script=[Outcome.succeed()]))
            pushes.append(failure_push(wired, jobs[-1]))
        current.append(ColdStart(INVOCATIONS))
        app.reset_runtime()
        start = threading.Barrier(INVOCATIONS)
        threads = [threading.Thread(target=deliver, args=(p, start)) for p in pushes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _, running = continuation.settle(CONTINUATION_TIMEOUT_S)
        assert running == 0

    assert [a for a in answers if not answered(a)] == []
    assert len(answers) == ROUNDS * INVOCATIONS
    assert escaped == []
    assert [cold.builds for cold in current] == [1] * ROUNDS

    app.runtime().retrier(Observer(quiet=True)).drain(Deadline.after(20))
    retried = wired.retry_counts()
    assert {job: retried[job] for job in jobs} == {job: 1 for job in jobs}


def is_open(path: Path) -> bool:
    """Whether this process holds `path` open (Linux: /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def sqlite_config(path: Path) -> Config:
    return Config.from_env({"AUTORETRY_STORE": f"sqlite:///{path}"})


def enqueue(rt: app.Runtime, job: str) -> None:
    rt.ledger.enqueue(JobRef("ap-guangzhou", job), event_name="JOB_FAILED", event_vars={})


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
def test_parts_a_new_configuration_replaces_are_closed_by_their_last_user(
    tmp_path: Path, function_env: Path
) -> None:
    first_db, second_db = tmp_path / "first.db", tmp_path / "second.db"

    with app.runtime_in_use(sqlite_config(first_db)) as old:
        with app.runtime_in_use(sqlite_config(first_db)) as same:
            assert same is old
            enqueue(old, "job-c0nc0001")
            # A continuation of the previous configuration still runs when the next one starts.
            new = app.runtime(sqlite_config(second_db))
            assert new is not old
            assert is_open(first_db)
        assert is_open(first_db)  # the other invocation still uses them
        enqueue(old, "job-c0nc0002")

    assert not is_open(first_db)
    assert app.runtime(sqlite_config(second_db)) is new


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
def test_parts_forgotten_by_reset_runtime_are_closed_by_their_last_user(
    tmp_path: Path, function_env: Path
) -> None:
    db = tmp_path / "ledger.db"

    with app.runtime_in_use(sqlite_config(db)) as held:
        enqueue(held, "job-c0nc0003")
        app.reset_runtime()
        assert is_open(db)
        enqueue(held, "job-c0nc0004")
        assert app.runtime(sqlite_config(db)) is not held

    app.reset_runtime()
    assert not is_open(db)


def test_one_queue_client_serves_pull_ticks_running_at_once(wired: Emulator) -> None:
    name, threads_n, receives = "autoretry-notices", 16, 4
    wired.cmq.create_queue(name, visibility_timeout_s=600)  # none comes back during the test
    sent = {wired.cmq.send(name, f"notice {i}") for i in range(threads_n * receives)}
    shared = QueueClient(wired.url, name, credentials=lambda: Credentials(SECRET_ID, SECRET_KEY))
    received: list[str] = []
    failed: list[str] = []
    start = threading.Barrier(threads_n)

    def tick() -> None:
        start.wait()
        for _ in range(receives):
            try:
                received.extend(m.msg_id for m in shared.receive(max_messages=1))
            except Exception as e:
                failed.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=tick) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.close()

    assert failed == []
    assert sorted(received) == sorted(sent)


def test_a_tag_write_asked_as_the_writer_thread_gives_up_is_still_written(wired: Emulator) -> None:
    first, late = (wired.add_failed_job(name="tagged") for _ in range(2))
    memory = TagMemory(wired.uin, endpoint=wired.endpoint, protocol="http",
                       credentials=lambda: Credentials(SECRET_ID, SECRET_KEY), rate_per_s=1000.0)

    class GivesUpAsWorkArrives(queue.Queue[tuple[str, dict[str, int]]]):
        """The writer finds its queue empty and gives up; in that instant a retrier asks for one
        more write (interleaved here at the worst moment, every time)."""

        raced = False

        def get(self, block: bool = True, timeout: float | None = None
                ) -> tuple[str, dict[str, int]]:
            if self.empty() and not self.raced:
                self.raced = True
                memory.remember(wired.region, {late: 1})
                raise queue.Empty
            return super().get(block, timeout)

    memory._work = GivesUpAsWorkArrives()
    memory.remember(wired.region, {first: 1})

    assert memory.settle(5.0)
    assert wired.fleet.jobs[first].tags.get(TAG_KEY) == "1"
    assert wired.fleet.jobs[late].tags.get(TAG_KEY) == "1"


def serve_env(tmp_path: Path, emu: Emulator, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_", "AWS_LAMBDA"))}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "AUTORETRY_STORE": store,
            "AUTORETRY_BATCH_ENDPOINT": emu.endpoint, "AUTORETRY_BATCH_PROTOCOL": "http",
            "AUTORETRY_API_SPEEDUP": f"{emu.speedup:g}", "TENCENTCLOUD_SECRET_ID": SECRET_ID,
            "TENCENTCLOUD_SECRET_KEY": SECRET_KEY}


def test_serve_answers_pushes_arriving_at_once_without_a_crash(emu: Emulator, tmp_path: Path) -> None:
    prefix = redis_prefix()
    proc = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", "0"],
                            env=serve_env(tmp_path, emu, f"{REDIS_URL}?prefix={prefix}"),
                            cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []
    # Both pipes are read all along: the function logs every decision to stdout, and a full pipe
    # would stall the server.
    banner = proc.stdout.readline()
    readers = [threading.Thread(target=lambda: proc.stdout.read() if proc.stdout else None,
                                daemon=True),
               threading.Thread(target=lambda: errors.extend(proc.stderr or ()), daemon=True)]
    for r in readers:
        r.start()
    try:
        served = re.search(r"http://127\.0\.0\.1:(\d+)/events", banner)
        assert served, banner
        port = int(served.group(1))
        jobs = [emu.add_failed_job(name="served", script=[Outcome.succeed()])
                for _ in range(INVOCATIONS)]
        statuses: list[object] = []
        start = threading.Barrier(len(jobs))

        def push(job: str) -> None:
            event = failure_push(emu, job)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            start.wait()
            try:
                conn.request("POST", "/events", body=event["body"].encode(),
                             headers=event["headers"])
                response = conn.getresponse()
                body = response.read()
                statuses.append(response.status if response.status in (200, 503)
                                else f"{response.status} {body[:200]!r}")
            except Exception as e:
                statuses.append(f"{type(e).__name__}: {e}")
            finally:
                conn.close()

        threads = [threading.Thread(target=push, args=(j,)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert [s for s in statuses if s not in (200, 503)] == []
        for job in jobs:  # the process drains them: each retried once
            emu.wait_job(job, timeout=20, retries=1)
    finally:
        proc.terminate()
        proc.wait(10)
        for r in readers:
            r.join(5)
        delete_redis_prefix(prefix)
    stderr = "".join(errors)
    assert "Traceback" not in stderr and "request failed" not in stderr, stderr
