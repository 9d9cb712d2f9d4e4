"""Where Tencent documents nothing, the emulator plays each plausible answer, and the function stays
right under every one: through `main_handler`, with duplicate notices, the real SDK, counted at
the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.jobs import JobRef

from ..conftest import SECRET_ID, SECRET_KEY
from ..pushes import failure_push

REGION = "ap-guangzhou"


@pytest.fixture(params=["refuse-all", "apply-some-then-refuse"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0, run_s=40.0,
                  retry_refusal=request.param, refailure_end_time="keep-end-time") as e:
        yield e


def queue_delivery(emu: Emulator, jobs: list[str], copies: int) -> dict[str, Any]:
    """One legacy CMQ-trigger invocation carrying `copies` copies of each job's failure notice."""
    records = [{"CMQ": {"msgId": f"msg-{j}", "msgBody": json.dumps(emu.notice(j, "JOB_FAILED"))}}
               for j in jobs for _ in range(copies)]
    return {"Records": records}


def spent(job_id: str) -> int:
    return app.runtime().ledger.history(JobRef(REGION, job_id)).spent()


def test_a_refused_batch_retries_each_failed_job_once_whether_or_not_the_service_applied_some(
        wired: Emulator, function_env: Path) -> None:
    a, b, c = (wired.add_failed_job(name=n, script=[Outcome.succeed()]) for n in "abc")
    real = wired.api.actions["DescribeJobs"]
    flipped: list[str] = []

    def describe_then_c_leaves_failed(params: dict[str, Any]) -> dict[str, Any]:
        answer = real(params)
        if not flipped and params.get("JobIds") and c in params["JobIds"]:
            flipped.append(c)  # between our DescribeJobs and RetryJobs, someone retries c
            wired.fleet.retry(wired.fleet.jobs[c])
        return answer

    wired.api.actions["DescribeJobs"] = describe_then_c_leaves_failed
    answer = app.main_handler(queue_delivery(wired, [a, b, c], copies=3), {"time_limit_in_ms": 30000})
    assert answer["statusCode"] == 200
    app.main_handler({"Type": "Timer"}, {"time_limit_in_ms": 30000})  # the timer drains the rest
    refused = wired.count("RetryJobs", "UnsupportedOperation")
    assert refused >= 1
    counts = wired.retry_counts()
    assert (counts[a], counts[b]) == (1, 1)
    assert counts[c] == 1  # the one retry someone else made; never ours on top
    assert (spent(a), spent(b)) == (1, 1)


def test_a_refailure_that_keeps_its_end_time_is_retried_once_more_never_twice(
        wired: Emulator, function_env: Path) -> None:
    job = wired.add_failed_job(name="flaky", script=[Outcome.fail("CVM_SPOT_RECLAIMED"),
                                                     Outcome.succeed()])
    first_end = wired.job(job)["end_time"]
    for _ in range(3):  # the first failure's notice, with duplicates
        assert app.main_handler(failure_push(wired, job), {"time_limit_in_ms": 30000})[
            "statusCode"] == 200
    wired.wait_job(job, 20, state="RUNNING")
    # a late duplicate of the first notice finds the job running: seen out of FAILED
    assert app.main_handler(failure_push(wired, job), {"time_limit_in_ms": 30000})["statusCode"] == 200
    wired.wait_job(job, 20, state="FAILED")
    assert wired.job(job)["end_time"] == first_end  # the service kept the old EndTime
    for _ in range(3):  # the second failure's notice, with duplicates
        assert app.main_handler(failure_push(wired, job), {"time_limit_in_ms": 30000})[
            "statusCode"] == 200
    assert wired.retry_counts()[job] == 2
    assert spent(job) == 2
