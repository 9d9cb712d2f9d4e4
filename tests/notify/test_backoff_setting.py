"""AUTORETRY_NOTIFY_BACKOFF_S sets how long a message that failed waits before it is tried again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from emulator.receiver import Receiver
from handler import app
from handler.notify import Notifications
from handler.observe import Observer

from .conftest import failure, give_up


def notifications(monkeypatch: pytest.MonkeyPatch, receiver: Receiver, backoff: str | None
                  ) -> Notifications:
    """The function's own notifications, sending to the receiver's WeCom robot."""
    for name in [n for n in os.environ if n.startswith("AUTORETRY_NOTIFY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AUTORETRY_NOTIFY_WECOM_URL", receiver.url("wecom"))
    if backoff is not None:
        monkeypatch.setenv("AUTORETRY_NOTIFY_BACKOFF_S", backoff)
    built = app.runtime().notifications
    assert built is not None
    return built


@pytest.mark.parametrize(("backoff", "low", "high"), [("1", 0.5, 1.0), (None, 15.0, 30.0)],
                         ids=["1s", "default-30s"])
def test_a_failed_message_waits_between_half_and_all_of_the_backoff_setting(
        function_env: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        backoff: str | None, low: float, high: float) -> None:
    n = notifications(monkeypatch, receiver, backoff)
    key = failure(1)
    n.outbox.add(key, give_up(key))
    receiver.down(503)
    before = time.time()
    assert n.deliver(Observer(quiet=True), 10.0).rescheduled == [str(key)]
    after = time.time()
    kept = n.outbox.get(key)
    assert kept is not None and kept["state"] == "pending"
    assert before + low <= float(kept["next_at"]) <= after + high


def test_a_failed_message_is_tried_again_once_its_backoff_has_passed(
        function_env: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    n = notifications(monkeypatch, receiver, "1")
    key = failure(2)
    n.outbox.add(key, give_up(key))
    receiver.down(503)
    assert n.deliver(Observer(quiet=True), 10.0).rescheduled == [str(key)]
    receiver.up()
    assert n.deliver(Observer(quiet=True), 10.0).sent == []  # not due yet
    kept = n.outbox.get(key)
    assert kept is not None and float(kept["next_at"]) - time.time() <= 1.0
    time.sleep(max(0.0, float(kept["next_at"]) - time.time()))  # the due time itself, not a guess
    assert n.deliver(Observer(quiet=True), 10.0).sent == [str(key)]
    assert len(receiver.accepted("wecom")) == 1
