"""The retrier's flow over a real SQLite ledger and an in-memory gateway."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from handler.gateway import ApiError, ErrorKind
from handler.jobs import FailureKey, JobRef, JobView, iso_epoch
from handler.ledger import FailureState, Ledger
from handler.ledger.sqlite import SqliteStore
from handler.observe import Observer
from handler.policy import Action, DefaultPolicy, RetryDecision
from handler.retrier import Deadline, Retrier, Settings

from .fakes import Clock, FakeGateway

REGION = "ap-guangzhou"


def make(tmp_path: Path, clock: Clock, gw: FakeGateway, **settings: object) -> Retrier:
    ledger = Ledger(SqliteStore(str(tmp_path / "l.db")), clock=clock)
    return Retrier(ledger, gw, DefaultPolicy(), settings=Settings(**settings),  # type: ignore[arg-type]
                   observer=Observer(quiet=True), clock=clock, sleep=clock.sleep)


def deadline(clock: Clock) -> Deadline:
    return Deadline(clock.now + 60, clock)


def end(clock: Clock, ago: float = 5) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - ago))


def test_duplicate_notices_give_one_retry(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    r = make(tmp_path, clock, gw)
    for _ in range(5):
        r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
        r.drain(deadline(clock))
    assert gw.retried == [["job-00000001"]]


def test_burst_is_retried_in_one_call_per_hundred_jobs(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    for i in range(250):
        gw.fail(f"job-{i:08d}", end(clock))
        make(tmp_path, clock, gw).enqueue(JobRef(REGION, f"job-{i:08d}"), "JOB_FAILED", {})
    r = make(tmp_path, clock, gw)
    report = r.drain(deadline(clock))
    assert [len(b) for b in gw.retried] == [100, 100, 50]
    assert len(set(report.retried)) == 250


def test_job_failing_again_is_retried_up_to_three_times_then_left_alone(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    r = make(tmp_path, clock, gw)
    job = JobRef(REGION, "job-00000001")
    for _ in range(5):
        clock.now += 10
        gw.fail(job.job_id, end(clock, ago=1))
        r.enqueue(job, "JOB_FAILED", {})
        r.drain(deadline(clock))
    assert gw.count(job.job_id) == 3
    skipped = [d for d in r.observer.decisions if d["outcome"] == "max_attempts"]  # refused by the claim
    assert len(skipped) == 2 and skipped[0]["reason"].startswith("max_attempts")


def test_job_not_failed_when_verified_is_never_retried(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock), state="RUNNING")
    r = make(tmp_path, clock, gw)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    r.drain(deadline(clock))
    assert gw.retried == []
    assert r.observer.decisions[-1]["outcome"] == "not_failed"


def test_throttled_call_releases_the_claim_and_retries_later(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    gw.fail_next.append(ApiError("RetryJobs", ErrorKind.THROTTLED, "RequestLimitExceeded", "slow"))
    r = make(tmp_path, clock, gw)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    r.flush(deadline(clock), wait=True)
    assert gw.retried == []
    key = FailureKey(REGION, "job-00000001", gw.jobs["job-00000001"]["EndTime"])
    assert r.ledger.state(key) is None and r.ledger.history(key.job).spent() == 0
    clock.now += 120
    r.drain(deadline(clock))
    assert gw.retried == [["job-00000001"]]


@pytest.mark.parametrize("applied", [True, False])
def test_ambiguous_call_is_resolved_by_rereading_never_doubled(tmp_path: Path, clock: Clock,
                                                               applied: bool) -> None:
    gw = FakeGateway(apply_on_error=applied)
    gw.fail("job-00000001", end(clock))
    gw.fail_next.append(ApiError("RetryJobs", ErrorKind.AMBIGUOUS, "ClientNetworkError", "Read timed out"))
    r = make(tmp_path, clock, gw)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    r.drain(deadline(clock))
    key = FailureKey(REGION, "job-00000001", gw.jobs["job-00000001"]["EndTime"])
    assert r.ledger.state(key) is not None and r.ledger.state(key)[0] == FailureState.AMBIGUOUS  # type: ignore[index]
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})  # a redelivery meanwhile
    r.drain(deadline(clock))
    assert gw.count("job-00000001") == (1 if applied else 0)
    clock.now += 120
    r.drain(deadline(clock))
    assert gw.count("job-00000001") == 1
    assert r.ledger.history(key.job).spent() == 1
    assert r.ledger.state(key) == (FailureState.RETRIED, 0.0)


def test_a_claim_taken_over_from_a_slow_holder_whose_call_applied_is_not_called_again(
        tmp_path: Path, clock: Clock) -> None:
    """Holder A claims and calls, then is too slow to record before its lease ends. B's view of
    the job was read before A's call landed; B takes the claim over, reads the job again, sees it
    left the failure and confirms A's retry: no second call, the budget spent once."""
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    b = make(tmp_path, clock, gw)
    key = FailureKey(REGION, "job-00000001", gw.jobs["job-00000001"]["EndTime"])
    a = Ledger(b.ledger.store, clock=clock, owner="slow-holder")
    b.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    real = gw.describe_jobs
    reads: list[str] = []

    def stale_first(region: str, ids: list[str]):  # type: ignore[no-untyped-def]
        views = real(region, ids)
        if not reads:  # B's batch read happens, then A's claim expires and its call lands
            a.claim(key, RetryDecision(Action.RETRY, "default", "retry 1 of 3", cap=3), 5.0)
            clock.now += 10  # A's lease has ended; A has not recorded
            gw.retry_jobs(region, ["job-00000001"])  # ...but its call was applied
        reads.append(",".join(ids))
        return views

    gw.describe_jobs = stale_first  # type: ignore[method-assign]
    b.drain(deadline(clock))
    assert gw.retried == [["job-00000001"]]  # only A's call
    assert reads == ["job-00000001", "job-00000001"]  # B read the job again after the takeover
    assert b.ledger.state(key) == (FailureState.RETRIED, 0.0)
    assert b.ledger.history(key.job).spent() == 1
    assert b.ledger.pending(key.job) == []


@pytest.mark.parametrize("apply_some", [False, True], ids=["refuse-all", "apply-some-then-refuse"])
def test_batch_rejected_for_one_job_retries_the_others_once(tmp_path: Path, clock: Clock,
                                                            apply_some: bool) -> None:
    gw = FakeGateway(apply_some_then_refuse=apply_some)
    for i in range(3):
        gw.fail(f"job-0000000{i}", end(clock))
    r = make(tmp_path, clock, gw)
    for i in range(3):
        r.enqueue(JobRef(REGION, f"job-0000000{i}"), "JOB_FAILED", {})
    # between our DescribeJobs and RetryJobs, job 1 changes state
    real = gw.describe_jobs

    def describe_then_change(region: str, ids: list[str]):  # type: ignore[no-untyped-def]
        views = real(region, ids)
        gw.jobs["job-00000001"]["JobState"] = "RUNNABLE"
        gw.describe_jobs = real  # type: ignore[method-assign]
        return views

    gw.describe_jobs = describe_then_change  # type: ignore[method-assign]
    r.drain(deadline(clock))
    assert sorted(j for b in gw.retried for j in b) == ["job-00000000", "job-00000002"]
    # whether or not the refused call retried them, each counts once against its budget
    for j in ("job-00000000", "job-00000002"):
        assert r.ledger.history(JobRef(REGION, j)).spent() == 1
        assert r.ledger.pending(JobRef(REGION, j)) == []


def test_dry_run_decides_without_calling_retry_jobs(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    r = make(tmp_path, clock, gw, dry_run=True)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    r.drain(deadline(clock))
    assert gw.retried == []
    assert r.observer.decisions[-1]["outcome"] == "dry_run"


def test_sweep_enqueues_failures_no_notice_announced(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    gw.fail("job-00000002", end(clock, ago=3 * 86400))  # too old for the default policy
    r = make(tmp_path, clock, gw)
    r.sweep(deadline(clock))
    assert gw.retried == [["job-00000001"]]


def test_pump_waits_out_a_short_backoff_rather_than_leave_it_to_the_timer(
    tmp_path: Path, clock: Clock
) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    gw.fail_next.append(ApiError("RetryJobs", ErrorKind.THROTTLED, "RequestLimitExceeded", "slow"))
    r = make(tmp_path, clock, gw)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    r.pump(deadline(clock), linger_s=5)
    assert gw.retried == [["job-00000001"]]


def test_pump_leaves_the_queue_to_a_live_drainer(tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    r = make(tmp_path, clock, gw)
    other = Ledger(r.ledger.store, clock=clock, owner="other")
    assert other.acquire_drainer(30)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    assert r.pump(deadline(clock)).stopped == "busy"
    assert gw.retried == []
    other.release_drainer()
    r.pump(deadline(clock))
    assert gw.retried == [["job-00000001"]]


def test_the_drainer_keeps_its_short_lease_through_a_call_that_outlasts_it(tmp_path: Path) -> None:
    # Real time: the heartbeat renews on a thread of its own while the drain waits for an answer.
    gw = FakeGateway()
    gw.fail("job-00000001", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5)))
    in_call, answer = threading.Event(), threading.Event()
    describe = gw.describe_jobs

    def slow_describe(region: str, job_ids: list[str]) -> dict[str, JobView]:
        in_call.set()
        answer.wait(10)
        return describe(region, job_ids)

    gw.describe_jobs = slow_describe  # type: ignore[method-assign]
    ledger = Ledger(SqliteStore(str(tmp_path / "l.db")))
    r = Retrier(ledger, gw, DefaultPolicy(), settings=Settings(renewed_lease_s=0.3),
                observer=Observer(quiet=True))
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    pumped = threading.Thread(target=lambda: r.pump(Deadline.after(30)))
    pumped.start()
    assert in_call.wait(10)
    other = Ledger(ledger.store, owner="other")
    for _ in range(4):  # four leases long: only the renewals keep it
        time.sleep(0.3)
        assert not other.acquire_drainer(0.3)
    answer.set()
    pumped.join(10)
    assert gw.retried == [["job-00000001"]]
    assert other.acquire_drainer(0.3)  # let go at the end


def test_a_drainer_that_stalled_past_its_lease_and_was_replaced_stops_busy(
        tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    gw.fail_next.append(ApiError("RetryJobs", ErrorKind.THROTTLED, "RequestLimitExceeded", "slow"))
    r = make(tmp_path, clock, gw, renewed_lease_s=10.0)
    other = Ledger(r.ledger.store, clock=clock, owner="other")

    def stalled(s: float) -> None:  # waiting out the backoff, the process stalls past its lease
        clock.sleep(s + 11)
        assert other.acquire_drainer(10)  # and another instance takes over

    r.sleep = stalled  # type: ignore[method-assign]
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    assert r.pump(deadline(clock), linger_s=5).stopped == "busy"
    assert gw.retried == []  # it made no call once the lease was another's


def retried_once(tmp_path: Path, clock: Clock) -> tuple[FakeGateway, Retrier, JobRef, str]:
    """A job that failed, was announced and was retried once; with the EndTime of that failure."""
    gw = FakeGateway()
    job = JobRef(REGION, "job-00000001")
    first_end = end(clock)
    gw.fail(job.job_id, first_end)
    r = make(tmp_path, clock, gw)
    r.enqueue(job, "JOB_FAILED", {})
    r.drain(deadline(clock))
    return gw, r, job, first_end


def test_a_refailure_keeping_the_old_end_time_after_the_job_was_seen_running_is_retried(
        tmp_path: Path, clock: Clock) -> None:
    gw, r, job, first_end = retried_once(tmp_path, clock)
    r.enqueue(job, "JOB_RUNNING", {})  # a notice while it runs: the job is seen out of FAILED
    r.drain(deadline(clock))
    gw.fail(job.job_id, first_end)  # fails again, and the service keeps the old EndTime
    for _ in range(3):  # with duplicates
        r.enqueue(job, "JOB_FAILED", {})
        r.drain(deadline(clock))
    assert gw.count(job.job_id) == 2
    assert r.ledger.history(job).spent() == 2
    assert r.observer.counters["failures.refailed_same_end_time"] == 1


def test_a_failure_still_failed_right_after_our_retry_is_a_duplicate_not_a_new_failure(
        tmp_path: Path, clock: Clock) -> None:
    gw, r, job, first_end = retried_once(tmp_path, clock)
    gw.fail(job.job_id, first_end)  # the API still shows the failure we just retried
    clock.sleep(10)
    r.enqueue(job, "JOB_FAILED", {})  # a redelivery of the first notice
    r.drain(deadline(clock))
    assert gw.count(job.job_id) == 1
    # a retry long ago, and the job FAILED with that EndTime now: it failed again
    clock.sleep(Settings().refail_after_s)
    r.enqueue(job, "JOB_FAILED", {})
    r.drain(deadline(clock))
    assert gw.count(job.job_id) == 2
    assert r.ledger.history(job).spent() == 2


def test_a_failed_job_without_a_usable_end_time_is_skipped_with_a_reason(tmp_path: Path,
                                                                        clock: Clock) -> None:
    gw = FakeGateway()
    r = make(tmp_path, clock, gw)
    for i, bad in enumerate(["", "yesterday"]):
        job = JobRef(REGION, f"job-0000000{i}")
        gw.fail(job.job_id, bad)
        r.enqueue(job, "JOB_FAILED", {})
    r.drain(deadline(clock))
    assert gw.retried == []
    for i in range(2):
        record = r.ledger.job(JobRef(REGION, f"job-0000000{i}"))
        assert record is not None
        assert record["decisions"][-1]["reason"].startswith("bad_end_time")
    assert list(r.ledger.queue()) == []


def notified(tmp_path: Path, clock: Clock) -> tuple[FakeGateway, Retrier]:
    """A failed job whose notice is enqueued, on an instance that waits 0.5 s at most for a turn
    of the API's limit."""
    gw = FakeGateway()
    gw.fail("job-00000001", end(clock))
    r = make(tmp_path, clock, gw, max_token_wait_s=0.5)
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {})
    return gw, r


def hold_api_turns(r: Retrier, clock: Clock, action: str = "DescribeJobs") -> None:
    """Another instance takes the turn to call `action`, for a call it never reports done: it
    counts as in flight for a call timeout and a second (2 s with FakeGateway's), then as finished, and the
    next turn comes 1/rate (0.5 s) later: 2 s after this returns."""
    other = Ledger(r.ledger.store, clock=clock, owner="other")
    assert other.take_token(action, 2.0, 1.0).slot is not None
    clock.sleep(0.5)


def test_a_flush_that_gets_no_api_turn_stops_busy_not_out_of_time(tmp_path: Path,
                                                                  clock: Clock) -> None:
    gw, r = notified(tmp_path, clock)
    hold_api_turns(r, clock, "DescribeJobs")
    assert r.drain(deadline(clock)).stopped == "busy"
    clock.sleep(3)  # the DescribeJobs turns are free again…
    hold_api_turns(r, clock, "RetryJobs")  # …and the job, described, gets no RetryJobs turn
    assert r.drain(deadline(clock)).stopped == "busy"
    assert gw.retried == [] and len(gw.described) == 1


def test_a_drainer_that_got_no_api_turn_looks_again_while_its_time_lasts(tmp_path: Path,
                                                                         clock: Clock) -> None:
    gw, r = notified(tmp_path, clock)
    hold_api_turns(r, clock, "RetryJobs")  # free again 3 s on, within the 60 s of the invocation
    report = r.pump(deadline(clock))
    assert gw.retried == [["job-00000001"]]
    assert report.stopped == "idle"
    assert not report.left_due


def test_a_drainer_out_of_time_with_work_left_hands_it_to_one_continuation(tmp_path: Path,
                                                                           clock: Clock) -> None:
    from handler.ingress import _worth_continuing

    gw, r = notified(tmp_path, clock)
    hold_api_turns(r, clock)  # busy for longer than the invocation lasts
    report = r.pump(Deadline(clock.now + 2.5, clock))
    assert report.stopped == "time" and report.retried == [] and gw.retried == []
    assert report.left_due
    assert _worth_continuing(report)  # the notice's invocation starts a continuation…
    assert not _worth_continuing(report, chained=True)  # …which, retrying nothing, starts no other


def test_a_drainer_out_of_time_whose_calls_failed_leaves_them_to_the_timer(tmp_path: Path,
                                                                           clock: Clock) -> None:
    from handler.ingress import _worth_continuing

    class NoJitter(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return a  # each backoff ends at once: the entry is due again when time runs out

    gw, r = notified(tmp_path, clock)
    gw.fail_next = [ApiError("RetryJobs", ErrorKind.THROTTLED, "RequestLimitExceeded", "slow")] * 3
    r.flusher.rng = NoJitter()
    report = r.pump(Deadline(clock.now + 2.5, clock))
    assert report.stopped == "time" and gw.retried == []
    assert not report.left_due  # due again, but tried: its backoff is the timer's business
    assert not _worth_continuing(report)


def test_a_termination_a_notice_named_is_skipped_only_for_the_failure_it_named(
        tmp_path: Path, clock: Clock) -> None:
    gw = FakeGateway()
    now_end, earlier_end = end(clock), end(clock, ago=600)
    gw.fail("job-00000001", now_end)
    gw.fail("job-00000002", now_end)
    r = make(tmp_path, clock, gw)
    said = "terminated by user"
    # For the failure the job is in now: skipped, for nothing (no details read).
    r.enqueue(JobRef(REGION, "job-00000001"), "JOB_FAILED", {}, said=(said, iso_epoch(now_end)))
    # For an earlier failure (a late notice): it says nothing of this one, which is retried.
    r.enqueue(JobRef(REGION, "job-00000002"), "JOB_FAILED", {}, said=(said, iso_epoch(earlier_end)))
    r.drain(deadline(clock))
    assert gw.retried == [["job-00000002"]] and gw.detail_calls == 0
    skipped = [d for d in r.observer.decisions if d["job"] == "job-00000001"]
    assert [(d["rule"], d["outcome"]) for d in skipped] == [("terminated", "skipped")]
