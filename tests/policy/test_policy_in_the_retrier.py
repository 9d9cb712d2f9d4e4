"""Policies driving the real retrier over a SQLite ledger and an in-memory gateway: backoff through
the ledger's due time, the fleet budget, uncounted retries, lazy details, the sweep's age; the cap
enforced by the ledger's claim alone; the submitter's tags; what a forged notice cannot do."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from handler.jobs import FailureKey, JobDetail, JobRef
from handler.ledger import FailureState, Ledger
from handler.ledger.sqlite import SqliteStore
from handler.observe import Observer
from handler.policy import DefaultPolicy, Policy
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
    last = r.observer.decisions[-1]
    assert (last["outcome"], last["reason"]) == ("max_attempts",
                                                 "max_uncounted: the cap of 4 uncounted retries is spent")


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


def fail_again_and_notify(r: Retrier, clock: Clock, gw: FakeGateway, job_id: str, times: int,
                          event_vars: dict[str, str] | None = None) -> None:
    """The job fails `times` times in a row, each failure announced by a notice."""
    for _ in range(times):
        clock.now += 10
        gw.fail(job_id, end(clock, ago=1))
        r.enqueue(JobRef(REGION, job_id), "JOB_FAILED", dict(event_vars or {}))
        r.drain(Deadline(clock.now + 60, clock))


@pytest.mark.parametrize("p", [DefaultPolicy(), policy("default: {action: RETRY}")],
                         ids=["built-in", "policy file"])
def test_the_ledger_claim_skips_a_job_whose_budget_is_spent(tmp_path: Path, clock: Clock, p: Policy) -> None:
    gw = gateway()
    r = retrier(tmp_path, clock, gw, p)
    fail_again_and_notify(r, clock, gw, "job-00000001", 5)
    assert gw.count("job-00000001") == 3
    refused = [d for d in r.observer.decisions if d["outcome"] == "max_attempts"]
    assert len(refused) == 2
    assert refused[0]["action"] == "SKIP"
    assert refused[0]["reason"] == "max_attempts: the job's cap of 3 retries is spent"
    key = FailureKey(REGION, "job-00000001", gw.jobs["job-00000001"]["EndTime"])
    assert r.ledger.state(key) == (FailureState.SKIPPED, 0.0)
    assert r.ledger.job(JobRef(REGION, "job-00000001"))["decisions"][-1]["reason"].startswith("max_attempts")


def test_a_spent_budget_is_given_up_at_once_not_after_its_backoff(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    r = retrier(tmp_path, clock, gw, policy(
        "default: {action: RETRY}\n"
        "limits: {max_attempts: 1, backoff: {initial: 10m, cap: 10m, jitter: none}}"))
    gw.fail("job-00000001", end(clock, ago=601))  # its backoff has passed: retried now
    notice(r, clock, "job-00000001")
    assert gw.retried == [["job-00000001"]]
    clock.now += 10
    gw.fail("job-00000001", end(clock, ago=1))
    notice(r, clock, "job-00000001")
    assert r.observer.decisions[-1]["outcome"] == "max_attempts"
    assert list(r.ledger.queue()) == []


@pytest.mark.parametrize(("tags", "retries"), [
    ({"autoretry:disabled": "true"}, 0),
    ({"autoretry:disabled": "TRUE"}, 0),
    ({"autoretry:disabled": "Yes"}, 0),
    ({"autoretry:max-attempts": "0"}, 0),
    ({"autoretry:max-attempts": "4"}, 4),
    ({"autoretry:max-attempts": "1"}, 1),
    ({}, 3),
])
def test_the_builtin_policy_keeps_the_submitters_word(tmp_path: Path, clock: Clock, tags: dict[str, str],
                                                     retries: int) -> None:
    gw = gateway()
    r = retrier(tmp_path, clock, gw, DefaultPolicy())
    for _ in range(6):
        clock.now += 10
        gw.fail("job-00000001", end(clock, ago=1))
        gw.jobs["job-00000001"]["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]  # type: ignore[assignment]
        notice(r, clock, "job-00000001")
    assert gw.count("job-00000001") == retries


@pytest.mark.parametrize("p", [DefaultPolicy(), policy("default: {action: RETRY}")],
                         ids=["built-in", "policy file"])
def test_a_notice_cannot_raise_its_own_cap(tmp_path: Path, clock: Clock, p: Policy) -> None:
    # The attack: `autoretry:max-attempts=100` in the notice's EventVars, against a cap of 3.
    gw = gateway()
    r = retrier(tmp_path, clock, gw, p)
    fail_again_and_notify(r, clock, gw, "job-00000001", 8, {"autoretry:max-attempts": "100"})
    assert gw.count("job-00000001") == 3


def test_a_notice_may_lower_its_cap(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    r = retrier(tmp_path, clock, gw, DefaultPolicy())
    fail_again_and_notify(r, clock, gw, "job-00000001", 4, {"autoretry:max-attempts": "1"})
    assert gw.count("job-00000001") == 1


def test_a_notice_cannot_choose_the_rule_that_retries_it(tmp_path: Path, clock: Clock) -> None:
    # The attack: `autoretry:policy-rule=everything-else` turning an exit-137 SKIP into a retry.
    gw = gateway()
    gw.fail("job-00000001", end(clock))
    gw.details["job-00000001"] = oom_detail("job-00000001")
    r = retrier(tmp_path, clock, gw, policy("""
        rules:
          - {name: oom, when: {exit_code: 137}, action: SKIP, reason: out of memory}
          - {name: everything-else, when: {job_name: 'etl-*'}, action: RETRY}
    """))
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {"autoretry:policy-rule": "everything-else"})
    r.drain(Deadline(clock.now + 60, clock))
    assert gw.retried == []
    last = r.observer.decisions[-1]
    assert (last["rule"], last["outcome"]) == ("oom", "skipped")


def test_a_job_tag_still_chooses_its_rule(tmp_path: Path, clock: Clock) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock))
    gw.jobs["job-00000001"]["Tags"] = [{"Key": "autoretry:policy-rule", "Value": "everything-else"}]  # type: ignore[assignment]
    gw.details["job-00000001"] = oom_detail("job-00000001")
    r = retrier(tmp_path, clock, gw, policy("""
        rules:
          - {name: oom, when: {exit_code: 137}, action: SKIP}
          - {name: everything-else, when: {job_name: 'etl-*'}, action: RETRY}
    """))
    notice(r, clock, "job-00000001")
    assert gw.retried == [["job-00000001"]]
    assert gw.detail_calls == 0  # the forced rule's conditions are not checked


def test_ignored_overrides_are_logged_by_the_retrier_with_the_correlation_id(
        tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    gw = gateway()
    gw.fail("job-00000001", end(clock))
    r = retrier(tmp_path, clock, gw, DefaultPolicy())
    r.observer = Observer(correlation_id="msg-42")
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {"autoretry:max-attempts": "lots"})
    r.drain(Deadline(clock.now + 60, clock))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [warned] = [line for line in lines if line["message"] == "policy override ignored"]
    assert warned["correlation_id"] == "msg-42" and warned["job"] == "job-00000001"
    assert warned["ignored"] == ("event var autoretry:max-attempts='lots': expected a whole number "
                                 "from 0 to 100")


@pytest.mark.parametrize("end_time", ["", "   ", "yesterday", "2026-13-45T99:00:00Z"])
def test_a_failed_job_with_an_unusable_end_time_is_a_logged_skip(tmp_path: Path, clock: Clock,
                                                                 end_time: str) -> None:
    gw = gateway()
    gw.fail("job-00000001", end_time)
    r = retrier(tmp_path, clock, gw, policy("default: {action: RETRY}"))
    notice(r, clock, "job-00000001")
    assert gw.retried == []
    last = r.observer.decisions[-1]
    assert (last["action"], last["outcome"]) == ("SKIP", "skipped")
    assert last["reason"].startswith("bad_end_time: FAILED with EndTime")
    assert list(r.ledger.queue()) == []
    assert r.reconcile(Deadline(clock.now + 60, clock)) == 0  # the sweep passes it over, no error
