"""Notice in, exactly one RetryJobs out — counted at the emulator."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.jobs import JobRef
from handler.observe import Observer
from handler.retrier import Deadline

from ..pushes import failure_push


def drain() -> None:
    app.runtime().retrier(Observer(quiet=True)).drain(Deadline.after(20))


def test_same_notice_five_times_concurrently_from_threads_retries_once(wired: Emulator) -> None:
    job = wired.add_failed_job(name="spot", script=[Outcome.succeed()], publish=False)
    event = failure_push(wired, job)
    answers: list[int] = []
    barrier = threading.Barrier(5)

    def deliver() -> None:
        barrier.wait()
        answers.append(app.main_handler(event, {"time_limit_in_ms": 15000})["statusCode"])

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drain()
    assert answers == [200] * 5
    assert wired.retry_counts()[job] == 1


def _deliver_in_process(env: dict[str, str], event: dict[str, Any], start_at: float,
                        out: Any) -> None:
    os.environ.update(env)
    from handler import app as child_app

    time.sleep(max(0.0, start_at - time.time()))
    out.put(child_app.main_handler(event, {"time_limit_in_ms": 15000})["statusCode"])


def test_same_notice_five_times_concurrently_from_processes_retries_once(wired: Emulator) -> None:
    job = wired.add_failed_job(name="spot", script=[Outcome.succeed()], publish=False)
    event = failure_push(wired, job)
    env = {k: v for k, v in os.environ.items() if k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))}
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 1.5  # let every child import first, then deliver together
    procs = [ctx.Process(target=_deliver_in_process, args=(env, event, start_at, out))
             for _ in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(out.get(timeout=5) for _ in procs) == [200] * 5
    drain()
    assert wired.retry_counts()[job] == 1


def test_job_failing_again_is_retried_three_times_then_left_alone(wired: Emulator) -> None:
    bug = Outcome.fail(reason="exit 1", exit_code=1)
    job = wired.add_failed_job(name="bug", script=[bug] * 10, publish=False)
    for _ in range(5):
        app.main_handler(failure_push(wired, job), {"time_limit_in_ms": 15000})
        drain()
        if wired.job(job)["state"] != "FAILED":
            wired.wait_job(job, state="FAILED")
    drain()
    assert wired.retry_counts()[job] == 3
    record = app.runtime().ledger.job(JobRef("ap-guangzhou", job))
    assert record is not None
    last = record["decisions"][-1]
    # the cap is the ledger's to enforce (atomically): its outcome word says which limit held
    assert last["outcome"] == "max_attempts" and last["reason"].startswith("max_attempts")


def test_job_not_failed_when_verified_is_never_retried(wired: Emulator) -> None:
    job = wired.add_job(name="ok", script=[Outcome.succeed()])
    wired.wait_job(job, state="SUCCEED")
    # a forged or stale notice claims it failed
    event = failure_push(wired, job)
    assert app.main_handler(event, {"time_limit_in_ms": 15000})["statusCode"] == 200
    drain()
    assert wired.retry_counts()[job] == 0
    assert wired.count("RetryJobs") == 0


def test_wrong_credentials_are_refused_by_signature_and_nothing_is_retried(
    wired: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "not-the-secret")
    app.reset_runtime()
    job = wired.add_failed_job(name="spot", script=[Outcome.succeed()], publish=False)
    app.main_handler(failure_push(wired, job), {"time_limit_in_ms": 15000})
    assert wired.retry_counts()[job] == 0
    assert any(c["error"] == "AuthFailure.SignatureFailure" for c in wired.calls)


def test_pushed_notices_with_duplicates_retry_each_failure_once(wired: Emulator, tmp_path: Path) -> None:
    from handler.commands.serve import start

    server = start()
    try:
        wired.subscribe("batch-events", f"http://127.0.0.1:{server.server_address[1]}/events",
                        duplicates=3, concurrent_duplicates=True)
        spot = Outcome.fail(reason="CVM_SPOT_RECLAIMED", exit_code=None)
        jobs = [wired.add_job(name=f"j{i}", script=[spot, Outcome.succeed()], topic="batch-events",
                              notify=["JOB_FAILED"]) for i in range(5)]
        for j in jobs:
            wired.wait_job(j, 20, state="SUCCEED")
        assert wired.wait_idle(10)
        drain()
    finally:
        server.shutdown()
    assert {j: wired.retry_counts()[j] for j in jobs} == {j: 1 for j in jobs}
