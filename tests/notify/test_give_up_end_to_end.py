"""A word when a job is given up, end to end: notices through `main_handler` (with duplicates), the
real SDK against the emulator, the timer delivering what is due; the channels down, then back.
Exactly one message per failure given up, on SQLite and on Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator, Outcome
from emulator.receiver import Receiver
from handler import app

from ..conftest import SECRET_ID, SECRET_KEY
from ..pushes import failure_push
from .conftest import DINGTALK_SECRET, WEBHOOK_SECRET


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0) as e:
        yield e


def fail_until_given_up(emu: Emulator, job: str) -> None:
    """Notices of every failure, three copies each, until the job's three retries are spent."""
    for retries in range(4):
        for _ in range(3):
            app.main_handler(failure_push(emu, job), {"time_limit_in_ms": 20000})
        emu.wait_job(job, 20, state="FAILED", retries=min(retries + 1, 3))


def timer_tick() -> None:
    app.main_handler({"Type": "Timer"}, {"time_limit_in_ms": 20000})


def test_each_job_given_up_is_announced_once_on_every_channel_even_after_an_outage(
        wired: Emulator, function_env: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORETRY_STORE", store_url)
    with Receiver(dingtalk_secret=DINGTALK_SECRET, webhook_secret=WEBHOOK_SECRET) as rx:
        for name, value in rx.env().items():
            monkeypatch.setenv(name, value)
        # A message refused waits out the backoff before it is tried again: 2 s, not the default
        # 30 s, so the test waits for what it checks, not for the clock.
        monkeypatch.setenv("AUTORETRY_NOTIFY_BACKOFF_S", "2")
        app.reset_runtime()
        rx.down(503)  # every channel is down while the jobs are given up
        jobs = [wired.add_failed_job(name=f"bug-{i}", script=[Outcome.fail("bug", 1)])
                for i in range(2)]
        for job in jobs:
            fail_until_given_up(wired, job)
        timer_tick()
        assert rx.accepted() == [] and rx.requests()  # tried, refused, kept
        rx.up()
        deadline = time.time() + 60
        while len(rx.accepted()) < 2 * 4 and time.time() < deadline:
            time.sleep(0.5)  # backoff: the next tick sends once it is due
            timer_tick()
        for _ in range(2):
            timer_tick()  # nothing more to send
        assert {j: wired.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 3)
        for channel in ("wecom", "dingtalk", "slack", "webhook"):
            got = rx.accepted(channel)
            assert len(got) == 2, (channel, [r.body for r in got])
            for job in jobs:
                assert sum(job in r.body.decode() for r in got) == 1, (channel, job)
