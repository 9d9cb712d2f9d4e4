"""One message per failure, never twice, never lost while the channel is down: the outbox and the
sender against the local receiver, on SQLite and Redis."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from emulator.receiver import Receiver
from handler.ledger import Store
from handler.notify import (
    Announcer,
    DingTalkChannel,
    Notifier,
    NotifySettings,
    Outbox,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    backoff_s,
)
from handler.notify.channels import Channel
from handler.notify.outbox import message_key
from handler.observe import Observer

from .conftest import DINGTALK_SECRET, WEBHOOK_SECRET, FakeClock, failure, give_up


def all_channels(rx: Receiver) -> list[Channel]:
    return [WeComChannel(rx.url("wecom"), timeout_s=5),
            DingTalkChannel(rx.url("dingtalk"), secret=DINGTALK_SECRET, timeout_s=5),
            SlackChannel(rx.url("slack"), timeout_s=5),
            WebhookChannel(rx.url("webhook"), secret=WEBHOOK_SECRET, timeout_s=5)]


def notifier(store: Store, clock: FakeClock, channels: list[Channel], **kw: object) -> Notifier:
    outbox = Outbox(store, clock=clock, retention_s=72 * 3600)
    return Notifier(outbox, channels, Observer(quiet=True), rng=random.Random(7), **kw)  # type: ignore[arg-type]


def accepted_jobs(rx: Receiver, channel: str) -> Counter[str]:
    """How many messages each job got on `channel`, read from what the receiver accepted."""
    counts: Counter[str] = Counter()
    for r in rx.accepted(channel):
        text = r.body.decode()
        jobs = {f"job-{i:08d}" for i in range(100) if f"job-{i:08d}" in text}
        assert len(jobs) == 1, text
        counts[jobs.pop()] += 1
    return counts


def test_each_give_up_is_sent_once_when_the_channel_is_down_and_back(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    n = notifier(store, clock, all_channels(receiver))
    keys = [failure(i) for i in range(5)]
    assert all(n.outbox.add(k, give_up(k)) for k in keys)

    receiver.down(503)
    report = n.deliver(30)
    assert sorted(report.rescheduled) == sorted(str(k) for k in keys)
    assert report.sent == [] and receiver.accepted() == []
    assert len(receiver.requests()) == 5 * 4  # every channel was tried, and refused
    tried = len(receiver.requests())
    assert n.deliver(30).sent == [] and len(receiver.requests()) == tried  # not due again yet

    receiver.up()
    clock.advance(3600)
    assert sorted(n.deliver(30).sent) == sorted(str(k) for k in keys)
    for channel in ("wecom", "dingtalk", "slack", "webhook"):
        assert accepted_jobs(receiver, channel) == {k.job_id: 1 for k in keys}, channel

    # The retrier re-deciding after a crash adds again: nothing more is sent, ever.
    assert not any(n.outbox.add(k, give_up(k)) for k in keys)
    clock.advance(3600)
    assert n.deliver(30).sent == []
    assert len(receiver.accepted()) == 5 * 4
    assert n.outbox.pending() == 0


def test_a_channel_that_took_a_message_never_gets_it_again_while_another_is_down(
    store: Store, clock: FakeClock
) -> None:
    with Receiver() as good, Receiver() as bad:
        n = notifier(store, clock, [WeComChannel(good.url("wecom")), SlackChannel(bad.url("slack"))])
        k = failure(1)
        n.outbox.add(k, give_up(k))
        bad.down(502)
        for _ in range(3):
            assert n.deliver(30).rescheduled == [str(k)]
            clock.advance(3600)
        bad.up()
        assert n.deliver(30).sent == [str(k)]
        assert len(good.accepted("wecom")) == 1
        assert len(bad.accepted("slack")) == 1
        assert len(bad.requests("slack")) == 4


def test_a_message_is_not_lost_while_connections_are_refused_and_backs_off_exponentially(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    n = notifier(store, clock, [WeComChannel(receiver.url("wecom"), timeout_s=2)], base_s=30, cap_s=600)
    k = failure(2)
    n.outbox.add(k, give_up(k))
    receiver.refuse()
    waits = []
    for attempt in range(6):
        start = clock()
        assert n.deliver(30).rescheduled == [str(k)]
        record = n.outbox.get(k)
        assert record is not None and record["attempts"] == attempt + 1
        assert "ConnectionRefusedError" in record["last_error"]
        waits.append(record["next_at"] - start)
        clock.advance(waits[-1] - 0.5)
        assert n.deliver(30).rescheduled == []  # half a second early: not due
        clock.advance(0.5)
    for attempt, wait in enumerate(waits):
        ceiling = min(600, 30 * 2**attempt)
        assert ceiling / 2 <= wait <= ceiling, (attempt, wait)
    assert waits[4] > waits[0] * 4  # grows, up to the cap
    receiver.up()
    assert n.deliver(30).sent == [str(k)]
    assert len(receiver.accepted("wecom")) == 1


def test_backoff_is_jittered_between_half_and_all_of_the_exponential_ceiling() -> None:
    rng = random.Random(3)
    for attempt in range(12):
        ceiling = min(1800.0, 30.0 * 2**attempt)
        draws = [backoff_s(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling / 4  # jittered, not one fixed delay


def test_throttled_channels_are_retried_after_their_retry_after(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    n = notifier(store, clock, all_channels(receiver), base_s=0.1, cap_s=0.2)
    k = failure(3)
    n.outbox.add(k, give_up(k))
    receiver.throttle()
    report = n.deliver(30)
    assert report.rescheduled == [str(k)] and report.channel_errors == 4
    record = n.outbox.get(k)
    assert record is not None
    # WeCom 45009 and DingTalk 130101 are rate limits (transient); Slack's 429 says Retry-After: 1.
    assert "errcode 45009" in record["last_error"] and "errcode 130101" in record["last_error"]
    assert record["next_at"] - clock() >= 1.0
    receiver.up()
    clock.advance(2)
    assert n.deliver(30).sent == [str(k)]
    assert len(receiver.accepted()) == 4


def test_a_message_leased_by_one_sender_is_not_sent_by_another_until_the_lease_ends(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    first = notifier(store, clock, [WeComChannel(receiver.url("wecom"))])
    second = notifier(store, clock, [WeComChannel(receiver.url("wecom"))])
    k = failure(4)
    first.outbox.add(k, give_up(k))
    claimed = first.outbox.claim(str(k), lease_s=60)
    assert claimed is not None  # the first sender "crashed" right after claiming
    report = second.deliver(30)
    assert report.held == 1 and report.sent == [] and receiver.requests() == []
    clock.advance(61)
    assert second.deliver(30).sent == [str(k)]
    assert len(receiver.accepted("wecom")) == 1


def test_deliver_sends_nothing_without_time_for_one_send(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    n = notifier(store, clock, [WeComChannel(receiver.url("wecom"), timeout_s=5)])
    k = failure(5)
    n.outbox.add(k, give_up(k))
    report = n.deliver(3)  # less than one timeout and its margin
    assert report.stopped == "time" and receiver.requests() == []
    assert n.outbox.pending() == 1
    assert n.deliver(30).sent == [str(k)]


def test_adding_is_idempotent_and_records_expire_after_the_ledgers_retention(
    store: Store, clock: FakeClock
) -> None:
    outbox = Outbox(store, clock=clock, retention_s=30 * 3600)
    k = failure(6)
    assert outbox.add(k, give_up(k)) is True
    assert outbox.add(k, give_up(k, outcome="skipped")) is False
    rec = store.get([message_key(str(k))])[message_key(str(k))]
    assert rec.expires_at == clock() + 30 * 3600
    assert rec.value["message"]["outcome"] == "max_attempts"  # the first add is the one kept
    assert outbox.due(10) == [str(k)]
    assert outbox.pending() == 1


def test_an_unsendable_message_expires_loudly_after_the_give_up_age(
    store: Store, receiver: Receiver, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = Outbox(store, clock=clock, retention_s=72 * 3600)
    n = Notifier(outbox, [WeComChannel(receiver.url("wecom"))], Observer(), rng=random.Random(1),
                 give_up_after_s=3600)
    k = failure(7)
    outbox.add(k, give_up(k))
    receiver.down()
    n.deliver(30)
    clock.advance(3601)
    report = n.deliver(30)
    assert report.expired == [str(k)]
    assert outbox.pending() == 0
    record = outbox.get(k)
    assert record is not None and record["state"] == "expired"
    assert '"message":"notification expired unsent"' in capsys.readouterr().out


def test_a_channel_that_refuses_a_message_for_good_is_given_up_after_five_refusals(
    store: Store, receiver: Receiver, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = Outbox(store, clock=clock)
    wrong = DingTalkChannel(receiver.url("dingtalk"), secret="SECnot-the-robots-secret")
    n = Notifier(outbox, [wrong, WeComChannel(receiver.url("wecom"))], Observer(), rng=random.Random(1))
    k = failure(8)
    outbox.add(k, give_up(k))
    for _ in range(5):
        n.deliver(30)
        clock.advance(3600)
    assert [r.status for r in receiver.requests("dingtalk")] == [200] * 5  # errcode 310000 in a 200
    assert receiver.accepted("dingtalk") == []
    assert len(receiver.accepted("wecom")) == 1
    record = outbox.get(k)
    assert record is not None and record["state"] == "sent" and record["abandoned"] == ["dingtalk"]
    assert "notification abandoned on a channel that refuses it" in capsys.readouterr().out
    n.deliver(30)
    assert len(receiver.requests("dingtalk")) == 5


def test_the_announcer_keeps_only_wanted_outcomes_and_nothing_without_a_channel(
    store: Store, receiver: Receiver, clock: FakeClock
) -> None:
    outbox = Outbox(store, clock=clock)
    settings = NotifySettings.from_env({"AUTORETRY_NOTIFY_WECOM_URL": receiver.url("wecom"),
                                        "AUTORETRY_NOTIFY_ON": "budget_exhausted,max_attempts"})
    announce = Announcer(outbox, settings)
    kw = {"reason": "r", "rule": "default", "retries_spent": 3}
    assert announce.give_up(failure(10), outcome="budget_exhausted", **kw) is True
    assert announce.give_up(failure(10), outcome="budget_exhausted", **kw) is False  # once per failure
    assert announce.give_up(failure(11), outcome="skipped", **kw) is False  # not wanted
    assert announce.give_up(failure(12), outcome="retried", **kw) is False  # not a give-up
    assert outbox.due(10) == [str(failure(10))]
    silent = Announcer(outbox, NotifySettings.from_env({}))
    assert silent.give_up(failure(13), outcome="max_attempts", **kw) is False
    assert outbox.pending() == 1
