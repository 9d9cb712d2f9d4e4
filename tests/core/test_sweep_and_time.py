"""Bounded by time, and a sweep that reconciles: every invocation stops taking work before its
time runs out and leaves the rest due; the sweep pages through FAILED jobs and enqueues only
young, in-scope failures nobody announced."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from handler.app import TIME_RESERVE_S, _deadline
from handler.jobs import JobRef
from handler.ledger import Ledger
from handler.ledger.sqlite import SqliteStore
from handler.observe import Observer
from handler.policy import DefaultPolicy, Policy
from handler.policy.loader import load_policy
from handler.retrier import Deadline, Retrier, Settings

from .fakes import Clock, FakeGateway
from .test_retrier import REGION, end


def retrier(tmp_path: Path, clock: Clock, gw: FakeGateway, policy: Policy | None = None) -> Retrier:
    ledger = Ledger(SqliteStore(str(tmp_path / "l.db")), clock=clock)
    return Retrier(ledger, gw, policy or DefaultPolicy(), settings=Settings(),
                   observer=Observer(quiet=True), clock=clock, sleep=clock.sleep)


class TimedGateway(FakeGateway):
    """Each API call takes `call_s` of the test clock, as a real round trip does."""

    def __init__(self, clock: Clock, call_s: float) -> None:
        super().__init__()
        self.clock, self.call_s = clock, call_s
        self.calls_at: list[float] = []

    def _tick(self) -> None:
        self.calls_at.append(self.clock.now)
        self.clock.now += self.call_s

    def describe_jobs(self, region, job_ids):  # type: ignore[no-untyped-def]
        self._tick()
        return super().describe_jobs(region, job_ids)

    def retry_jobs(self, region, job_ids):  # type: ignore[no-untyped-def]
        self._tick()
        return super().retry_jobs(region, job_ids)


def test_drain_stops_taking_work_before_the_deadline_and_leaves_the_rest_due(
        tmp_path: Path, clock: Clock) -> None:
    gw = TimedGateway(clock, call_s=0.2)
    r = retrier(tmp_path, clock, gw)
    jobs = [f"job-{i:08d}" for i in range(2000)]
    for j in jobs:
        gw.fail(j, end(clock))
        r.enqueue(JobRef(REGION, j), "JOB_FAILED", {})

    deadline = Deadline(clock.now + 4.0, clock)
    report = r.drain(deadline)

    assert report.stopped == "time"
    assert clock.now <= deadline.at  # no call started that could outlast the deadline
    assert all(at + gw.call_s <= deadline.at for at in gw.calls_at)
    done = {j for batch in gw.retried for j in batch}
    assert 0 < len(done) < len(jobs)  # at 2 calls/s, 4 s holds a few batches, not 20
    due = {e.job.job_id for e in r.ledger.queue()}
    assert due == set(jobs) - done  # the rest is left due, nothing dropped

    r.drain(Deadline(clock.now + 120.0, clock))  # the next invocation takes the rest
    assert sorted(j for batch in gw.retried for j in batch) == sorted(jobs)


def test_deadline_comes_from_scf_time_limit_and_lambda_remaining_time() -> None:
    started = time.time()
    scf = _deadline({"time_limit_in_ms": 20_000, "request_id": "r"}, started)
    assert abs(scf.at - (started + 20.0 - TIME_RESERVE_S)) < 0.01

    lam = _deadline(SimpleNamespace(get_remaining_time_in_millis=lambda: 7_000), started - 5.0)
    assert abs(lam.at - (time.time() + 7.0 - TIME_RESERVE_S)) < 0.05  # Lambda's counts from now

    # SCF's limit counts from the start of the invocation, not from when we read it
    late = _deadline({"time_limit_in_ms": 20_000}, started - 5.0)
    assert abs(late.at - (started + 15.0 - TIME_RESERVE_S)) < 0.05


def test_sweep_pages_through_every_failed_job_and_retries_lost_notices(
        tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    jobs = [f"job-{i:08d}" for i in range(250)]
    for j in jobs:
        gw.fail(j, end(clock))  # failed, but no notice ever arrived
    r = retrier(tmp_path, clock, gw)
    lines: list[str] = []

    r.sweep(Deadline(clock.now + 300, clock), progress=lines.append)

    assert sorted(j for batch in gw.retried for j in batch) == jobs
    assert [len(b) for b in gw.retried] == [100, 100, 50]
    # Each page's jobs are retried before the next page is listed: the FAILED listing shrinks
    # under the sweep, and no job is skipped for it.
    assert lines == [f"{REGION}: listed 100 FAILED jobs (250 failed now), 100 new failures enqueued",
                     f"{REGION}: listed 200 FAILED jobs (150 failed now), 200 new failures enqueued",
                     f"{REGION}: listed 250 FAILED jobs (50 failed now), 250 new failures enqueued"]


def test_sweep_leaves_failures_older_than_the_policy_max_age(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-0000young", end(clock, ago=3600))
    gw.fail("job-00000old0", end(clock, ago=3 * 3600))
    policy = load_policy("version: 1\ndefault: {action: RETRY}\nlimits: {max_failure_age: 2h}")
    r = retrier(tmp_path, clock, gw, policy)

    r.sweep(Deadline(clock.now + 60, clock))

    assert gw.retried == [["job-0000young"]]
    assert r.ledger.history(JobRef(REGION, "job-00000old0")).spent() == 0


def test_sweep_enqueues_nothing_the_policy_would_certainly_skip(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-nightly1", end(clock))
    gw.fail("job-adhoc001", end(clock))
    gw.jobs["job-nightly1"]["JobName"] = "nightly-render"
    gw.jobs["job-adhoc001"]["JobName"] = "adhoc"
    policy = load_policy("""
        version: 1
        default: {action: SKIP, reason: not ours}
        rules: [{name: nightly, when: {job_name: 'nightly-*'}, action: RETRY}]
    """)
    r = retrier(tmp_path, clock, gw, policy)

    enqueued = r.reconcile(Deadline(clock.now + 60, clock))

    assert enqueued == 1
    assert {e.job.job_id for e in r.ledger.queue()} == {"job-nightly1"}
