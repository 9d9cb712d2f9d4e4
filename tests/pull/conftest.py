"""The queue pull against the emulator: a topic whose notices go to a TDMQ-CMQ queue (with a
dead-letter queue), the real data-flow client signing every call, the function's ledger on SQLite."""

from __future__ import annotations

import time

import pytest

from emulator import Emulator
from handler import app
from handler.cmq import QueueClient, QueueSettings
from handler.observe import Observer
from handler.pull import PullReport, tick
from handler.retrier import Deadline

TOPIC, QUEUE, DLQ = "batch-events", "autoretry-notices", "autoretry-dead-letters"
MAX_RECEIVES = 3
VISIBILITY_S = 1  # the emulator runs 20x faster: hidden for 50 ms


@pytest.fixture
def queue(wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    wired.cmq.create_queue(DLQ)
    wired.cmq.create_queue(QUEUE, visibility_timeout_s=VISIBILITY_S, dead_letter_queue=DLQ,
                           max_receive_count=MAX_RECEIVES)
    wired.cmq.subscribe_queue(TOPIC, QUEUE)
    monkeypatch.setenv("AUTORETRY_QUEUE", QUEUE)
    monkeypatch.setenv("AUTORETRY_QUEUE_ENDPOINT", wired.url)
    return wired


def client() -> QueueClient:
    return QueueSettings.from_env().client()


def pull_once(observer: Observer | None = None, seconds: float = 20.0) -> PullReport:
    """One timer tick: pull the queue into the ledger, then drain what is due."""
    observer = observer or Observer(quiet=True)
    rt = app.runtime()
    report, _ = tick(client(), rt.retrier(observer), observer, Deadline.after(seconds),
                     rt.config.regions)
    return report


def after_visibility_timeout(emu: Emulator) -> None:
    time.sleep(VISIBILITY_S / emu.speedup + 0.05)


