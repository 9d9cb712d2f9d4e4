"""An account crowded with retained FAILED jobs and timer invocations that each start from a cold
runtime (a new instance: only the ledger remembers).

Scaled down from production (50,000 retained jobs, about a hundred pages listed per timer): 5,000
retained jobs and a sweep that lists about twenty pages per timer, so a pass takes a few timers,
as it does there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emulator import Emulator, Outcome
from handler import app

SPEEDUP = 8.0  # DescribeJobs: 16 calls/s
RETAINED = 5_000
# An invocation's limit: the 1 s the function keeps in reserve, the 2 s a flush needs to start
# (after the listing too, to retry what it found), the 1 s a call needs, and about a second of
# listing: some fifteen pages.
TIMER_LIMIT_S = 5.0
BOUND = 10  # timers: "within ten minutes" with a timer once a minute

# The retained failures are not ours to retry (an account's other workloads): the sweep lists them
# and leaves them. Only `lost-*` jobs are retried.
OURS = """
version: 1
default: {action: SKIP, reason: not ours}
rules: [{name: ours, when: {job_name: 'lost-*'}, action: RETRY}]
"""


def timer(time_limit_s: float = TIMER_LIMIT_S) -> dict[str, Any]:
    """One timer invocation on a new instance."""
    app.reset_runtime()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return app.main_handler({"Type": "Timer", "TriggerName": "sweep", "Time": now, "Message": ""},
                            {"time_limit_in_ms": int(time_limit_s * 1000), "request_id": "timer"})


def lose_notices(emu: Emulator, count: int) -> list[str]:
    """Jobs that failed and whose notices never arrived."""
    return [emu.add_failed_job(f"lost-{i}", [Outcome.succeed()]) for i in range(count)]


def timers_until_retried(emu: Emulator, jobs: list[str], most: int) -> int | None:
    """Timers run until every job in `jobs` was retried; None if `most` were not enough."""
    for n in range(1, most + 1):
        timer()
        counts = emu.retry_counts()
        if all(counts[j] >= 1 for j in jobs):
            return n
    return None


def sweep_pages(emu: Emulator) -> int:
    """DescribeJobs calls that listed a page (by state) rather than named jobs."""
    with emu._lock:
        return sum(1 for c in emu.calls if c["action"] == "DescribeJobs" and c["params"]
                   and "Filters" in c["params"])
