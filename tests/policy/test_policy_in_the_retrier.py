"""The rules policy driving the real retrier over a SQLite ledger and an in-memory gateway: backoff
through the ledger's due time, the fleet budget, uncounted retries, lazy details, the sweep's age."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from handler.jobs import FailureKey, JobDetail, JobRef
from handler.ledger import FailureState, Ledger
from handler.ledger.sqlite import SqliteStore
from handler.observe import Observer
from handler.policy import Policy
from handler.retrier import Deadline, Retrier
from tests.core.fakes import FakeGateway

from .builders import policy

REGION = "ap-guangzhou"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # real time: SQLite's expiry cleanup reads the wall clock

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@pytest.fixture
def clock() -> Clock:
    return Clock()


class DetailedGateway(FakeGateway):
    """FakeGateway whose DescribeJob answers with each job's own reasons and exit codes."""

    details: dict[str, JobDetail]

    def describe_job(self, region: str, job_id: str) -> JobDetail:
        self.detail_calls += 1
        return self.details.get(job_id) or JobDetail(JobId=job_id)


def gateway() -> DetailedGateway:
    gw = DetailedGateway()
    gw.details = {}
    return gw


def oom_detail(job_id: str, code: int = 137, reason: str = "OOMKilled") -> JobDetail:
    return JobDetail.model_validate({"JobId": job_id, "TaskSet": [{
        "TaskName": "main", "TaskState": "FAILED",
        "TaskInstanceSet": [{"TaskInstanceState": "FAILED", "ExitCode": code, "StateReason": reason}]}]})


def retrier(tmp_path: Path, clock: Clock, gw: FakeGateway, p: Policy) -> Retrier:
    ledger = Ledger(SqliteStore(str(tmp_path / "l.db")), clock=clock)
    return Retrier(ledger, gw, p, observer=Observer(quiet=True), clock=clock,  # type: ignore[arg-type]
                   sleep=clock.sleep)


def end(clock: Clock, ago: float = 5) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - ago))


def notice(r: Retrier, clock: Clock, job_id: str) -> None:
    r.enqueue(JobRef(REGION, job_id), "JOB_FAILED", {})
    r.drain(Deadline(clock.now + 60, clock))


def test_backoff_defers_the_retry_to_its_due_time_through_the_ledger(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock, ago=5))
    r = retrier(tmp_path, clock, gw, policy(
        "default: {action: RETRY}\nlimits: {backoff: {initial: 60s, jitter: none}}"))
    notice(r, clock, "job-00000001")
    assert gw.retried == []
    assert r.observer.decisions[-1]["outcome"] == "deferred"
    [entry] = r.ledger.queue()
    ended = gw.jobs["job-00000001"]["EndTime"]
    assert entry.due_at == datetime.fromisoformat(ended.replace("Z", "+00:00")).timestamp() + 60
    clock.now += 50
    r.drain(Deadline(clock.now + 60, clock))
    assert gw.retried == []
    clock.now += 10
    r.drain(Deadline(clock.now + 60, clock))
    assert gw.retried == [["job-00000001"]]


def test_fleet_budget_turns_the_extra_retry_into_budget_exhausted(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    for j in ("job-00000001", "job-00000002", "job-00000003"):
        gw.fail(j, end(clock))
    r = retrier(tmp_path, clock, gw, policy(
        "default: {action: RETRY}\nlimits: {fleet_budget: {max_retries: 2, window: 10m}}"))
    for j in gw.jobs:
        r.enqueue(JobRef(REGION, j), "JOB_FAILED", {})
    r.drain(Deadline(clock.now + 60, clock))
    assert sum(len(b) for b in gw.retried) == 2
    [spent] = [d for d in r.observer.decisions if d["outcome"] == "budget_exhausted"]
    assert spent["action"] == "SKIP" and spent["reason"].startswith("budget_exhausted")
    key = FailureKey(REGION, spent["job"], gw.jobs[spent["job"]]["EndTime"])
    assert r.ledger.state(key) == (FailureState.SKIPPED, 0.0)


def test_uncounted_retries_leave_the_job_budget_whole(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.details["job-00000001"] = oom_detail("job-00000001", code=143, reason="Spot instance reclaimed")
    r = retrier(tmp_path, clock, gw, policy("""
        rules:
          - {name: spot, when: {instance_reason: 'Spot*'}, action: RETRY_UNCOUNTED, max_uncounted: 4}
    """))
    for _ in range(6):
        clock.now += 10
        gw.fail("job-00000001", end(clock, ago=1))
        notice(r, clock, "job-00000001")
    assert gw.count("job-00000001") == 4
    assert r.ledger.history(JobRef(REGION, "job-00000001")).counters == {"uncounted": 4}
    assert r.observer.decisions[-1]["reason"].startswith("max_uncounted: 4 of 4")


def test_policy_on_names_and_tags_never_calls_describe_job(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock))
    r = retrier(tmp_path, clock, gw, policy("""
        rules:
          - {name: named, when: {job_name: 'name-*'}, action: RETRY}
    """))
    notice(r, clock, "job-00000001")
    assert gw.retried == [["job-00000001"]]
    assert gw.detail_calls == 0


def test_exit_code_rule_reads_details_once_and_skips_out_of_memory(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock))
    gw.details["job-00000001"] = oom_detail("job-00000001")
    r = retrier(tmp_path, clock, gw, policy("""
        default: {action: RETRY}
        rules:
          - {name: oom, when: {exit_code: 137}, action: SKIP, reason: out of memory}
    """))
    notice(r, clock, "job-00000001")
    assert gw.retried == []
    assert gw.detail_calls == 1
    assert (r.observer.decisions[-1]["rule"], r.observer.decisions[-1]["reason"]) == ("oom", "out of memory")


def test_sweep_enqueues_only_failures_the_policy_might_retry(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock))
    gw.fail("job-00000002", end(clock))
    gw.jobs["job-00000002"]["JobName"] = "nightly-2"
    r = retrier(tmp_path, clock, gw, policy("""
        rules:
          - {name: n, when: {job_name: 'nightly-*'}, action: RETRY}
    """))
    assert r.reconcile(Deadline(clock.now + 60, clock)) == 1
    assert [e.job.job_id for e in r.ledger.queue()] == ["job-00000002"]
    assert r.ledger.state(FailureKey(REGION, "job-00000001", gw.jobs["job-00000001"]["EndTime"])) is None


def test_sweep_looks_back_only_as_far_as_the_policy_max_failure_age(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock, ago=2 * 3600))
    gw.fail("job-00000002", end(clock, ago=30 * 60))
    r = retrier(tmp_path, clock, gw, policy("default: {action: RETRY}\nlimits: {max_failure_age: 1h}"))
    assert r.reconcile(Deadline(clock.now + 60, clock)) == 1
    assert [e.job.job_id for e in r.ledger.queue()] == ["job-00000002"]
