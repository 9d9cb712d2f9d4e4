"""A drainer that dies mid-drain (SIGKILL: no `finally` runs, its lease is never released) holds
up the fleet's next retry by one short lease at most, not by what was left of its invocation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from emulator import Emulator, Faults
from handler import app
from handler.ledger.records import DRAINER_KEY
from handler.ledger.sqlite import SqliteStore

from ..pushes import failure_push

ROOT = Path(__file__).resolve().parents[2]
# What the issue asks of a crash at Tencent's pace; the test's emulator runs 20x faster, where the
# lease is its floor (Settings.scaled: 3 s).
NEXT_RETRY_WITHIN_S = 10.0


def _drainer(db: Path) -> str | None:
    """Who holds the drainer lease now, if anyone."""
    store = SqliteStore(str(db))
    try:
        rec = store.get([DRAINER_KEY]).get(DRAINER_KEY)
    finally:
        store.close()
    if rec is None or float(rec.value.get("lease_until") or 0) <= time.time():
        return None
    owner = rec.value.get("owner")
    return str(owner) if owner else None


def _wait(what: str, done: object, timeout_s: float = 30.0) -> None:
    end = time.time() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.time() < end, f"{what} did not happen within {timeout_s:g} s"
        time.sleep(0.02)


def test_a_drainer_killed_mid_drain_delays_the_next_retry_by_one_short_lease_at_most(
        wired: Emulator, function_env: Path, tmp_path: Path) -> None:
    emu, db = wired, function_env
    # The first drainer's DescribeJobs calls are held past its timeout: it is mid-drain, lease
    # held, when it is killed.
    emu.faults = Faults(rate=1.0, kinds=("timeout",), actions=("DescribeJobs",))
    first = emu.add_failed_job("first")
    event = tmp_path / "notice.json"
    event.write_text(json.dumps(emu.notice(first)))
    log = (tmp_path / "drainer.log").open("w")
    drainer = subprocess.Popen([sys.executable, "-m", "handler", "invoke", str(event)], cwd=ROOT,
                               env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait("the first instance draining", lambda: _drainer(db) and emu.count("DescribeJobs"))
        holder = _drainer(db)
        drainer.send_signal(signal.SIGKILL)
        killed_at = time.time()
        drainer.wait(10)
    finally:
        if drainer.poll() is None:
            drainer.kill()
        log.close()
    emu.faults.rate = 0.0
    assert _drainer(db) == holder  # the dead instance's lease outlives it

    # Another failure's notice keeps arriving (the topic redelivers, more jobs fail) at this
    # instance, which finds the dead one's lease, knocks, and returns: until the lease runs out.
    second = emu.add_failed_job("second")
    app.reset_runtime()
    while not emu.count("RetryJobs", None) and time.time() - killed_at < 60:
        answer = app.main_handler(failure_push(emu, second), {"time_limit_in_ms": 15000})
        assert answer["statusCode"] == 200, answer
        time.sleep(0.2)
    retries = [c["t"] for c in emu.calls if c["action"] == "RetryJobs" and c["error"] is None]
    assert retries, f"no RetryJobs within 60 s of the drainer's death (log: {tmp_path})"
    waited = retries[0] - killed_at
    assert waited < NEXT_RETRY_WITHIN_S, \
        f"the next RetryJobs came {waited:.1f} s after the drainer died (lease held by {holder})"
    assert emu.retry_counts()[second] == 1
