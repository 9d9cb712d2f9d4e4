"""Sweeping does not starve flushes of the DescribeJobs budget they share: while the sweep walks a
crowded listing, a burst of notified failures is retried at once, and while any flush is queued or
in flight the sweep takes at most every other DescribeJobs turn."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.config import Config
from handler.observe import Observer
from handler.retrier import Deadline, FlushReport

from .scenario import OURS, RETAINED

BURST = 1000  # ten group commits


def calls_between(emu: Emulator, start: float, end: float) -> tuple[int, int]:
    """DescribeJobs calls answered in [start, end]: (listing pages for the sweep, by id for flushes)."""
    with emu._lock:
        calls = [c for c in emu.calls if c["action"] == "DescribeJobs" and start <= c["t"] <= end
                 and c["params"]]
    return (sum(1 for c in calls if "Filters" in c["params"]),
            sum(1 for c in calls if "JobIds" in c["params"]))


@pytest.mark.parametrize("emu", ["unordered"], indirect=True)
def test_a_burst_of_notices_is_retried_at_once_while_the_sweep_walks_a_crowded_listing(
        wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = wired
    monkeypatch.setenv("AUTORETRY_POLICY", OURS.replace("'lost-*'", "'notified-*'"))
    emu.add_failed_jobs(RETAINED * 2, "retained")  # more than the sweep lists in its time
    sweep: dict[str, Any] = {}

    def run_sweep() -> None:
        # Its own instance: another runtime, another store connection, the same ledger.
        rt = app.build_runtime(Config.from_env())
        try:
            started = time.time()
            report: FlushReport = rt.retrier(Observer(quiet=True)).sweep(Deadline.after(10.0))
            sweep.update(report=report, started=started, ended=time.time())
        finally:
            rt.ledger.store.close()

    walker = threading.Thread(target=run_sweep)
    walker.start()
    time.sleep(1.0)  # the walk is under way
    jobs = [emu.add_failed_job(f"notified-{i}", [Outcome.succeed()]) for i in range(BURST)]
    # Ten queue messages of a hundred events each, in one delivery.
    events = [e for j in jobs for e in emu.notice(j)["Events"]]
    delivery = {"Records": [{"CMQ": {"msgId": f"m{k}", "msgBody": json.dumps(
        {"Events": events[k:k + 100]})}} for k in range(0, BURST, 100)]}
    app.reset_runtime()
    delivered = time.time()
    answer = app.main_handler(delivery, {"time_limit_in_ms": 30_000, "request_id": "burst"})
    while time.time() < delivered + 10:
        counts = emu.retry_counts()
        if all(counts[j] for j in jobs):
            break
        time.sleep(0.01)
    flushed = time.time()
    walker.join()

    counts = emu.retry_counts()
    assert answer["statusCode"] == 200
    assert all(counts[j] == 1 for j in jobs)
    assert sweep["ended"] > flushed  # the sweep walked all along
    # Ten group commits: a DescribeJobs and a RetryJobs each at 16 calls/s (0.6 s), plus the
    # ledger's work; taking turns with the sweep costs at most a turn more per call.
    assert flushed - delivered < 3.0
    listing, by_id = calls_between(emu, delivered, flushed)
    assert by_id >= BURST // 100
    assert listing <= by_id // 2 + 1  # the sweep took at most every other turn meanwhile
    assert sum(counts.values()) == BURST  # nothing retained was retried
