"""An HTTP push is answered within 10 s of its start however much work is due; what is still due
then is drained by a continuation nobody waits for, every job retried once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from emulator import Emulator
from handler import app
from handler.jobs import JobRef
from handler.ledger import Ledger, open_store

from ..conftest import SECRET_ID, SECRET_KEY
from ..pushes import failure_push

REGION = "ap-guangzhou"
JOBS = 500


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # The API five times slower than Tencent's (0.4 calls/s): 500 jobs take ~12 s to drain.
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=0.2) as e:
        yield e


def test_a_push_is_answered_within_ten_seconds_and_a_continuation_drains_the_rest(
        wired: Emulator, function_env: Path) -> None:
    jobs = [wired.add_failed_job(name=f"burst-{i}") for i in range(JOBS)]
    with closing(open_store(app.runtime().config.store)) as store:
        other = Ledger(store)
        for job in jobs[1:]:  # notices other instances accepted while a drainer held the lease
            other.enqueue(JobRef(REGION, job), event_name="JOB_FAILED")
    started = time.monotonic()
    answer = app.main_handler(failure_push(wired, jobs[0]), {"time_limit_in_ms": 60000})
    answered_s = time.monotonic() - started
    assert answer["statusCode"] == 200
    assert answered_s < 10.0, answered_s
    assert sum(wired.retry_counts()[j] for j in jobs) < JOBS  # the rest was left to continue
    end = time.monotonic() + 60
    while sum(wired.retry_counts()[j] for j in jobs) < JOBS and time.monotonic() < end:
        time.sleep(0.2)
    assert {wired.retry_counts()[j] for j in jobs} == {1}
