"""Bounded by time, and a sweep that reconciles: every invocation stops taking work before its
time runs out and leaves the rest due; the sweep pages through FAILED jobs and enqueues only
young, in-scope failures nobody announced."""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import pairwise
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


# ---- the walk at volume: a cursor in the ledger, one sweeper per region, flushes first ----------

class ListingGateway(FakeGateway):
    """Remembers each listing call: (offset, limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[tuple[int, int]] = []

    def list_jobs(self, region, state, offset, limit=100):  # type: ignore[no-untyped-def]
        self.listed.append((offset, limit))
        return super().list_jobs(region, state, offset, limit)

    def pages(self) -> list[int]:
        return [o for o, limit in self.listed if limit == 100]


def crowd(gw: FakeGateway, clock: Clock, count: int, ago: float = 3 * 3600) -> None:
    """`count` FAILED jobs older than the policy's max age, oldest first."""
    for i in range(count):
        gw.fail(f"job-{i:08d}", end(clock, ago=ago + count - i))


def listing(clock: Clock, count: int, ago: float = 3 * 3600) -> ListingGateway:
    """A listing gateway crowded with `count` old FAILED jobs (see `crowd`)."""
    gw = ListingGateway()
    crowd(gw, clock, count, ago)
    return gw


def instance(tmp_path: Path, clock: Clock, gw: FakeGateway, policy: Policy | None = None) -> Retrier:
    """A new instance on the same ledger (its own owner name, nothing in memory)."""
    return retrier(tmp_path, clock, gw, policy or load_policy(
        "version: 1\ndefault: {action: RETRY}\nlimits: {max_failure_age: 2h}"))


def test_a_new_instance_resumes_the_walk_one_page_before_where_the_last_sweep_stopped(
        tmp_path: Path, clock: Clock) -> None:
    gw = listing(clock, 3000)

    instance(tmp_path, clock, gw).sweep(Deadline(clock.now + 10, clock))
    first = gw.pages()
    stopped = instance(tmp_path, clock, gw).ledger.sweep_cursor(REGION).offset
    gw.listed.clear()
    instance(tmp_path, clock, gw).sweep(Deadline(clock.now + 10, clock))

    assert first[:3] == [0, 100, 200] and 300 < stopped < 3000 and stopped == first[-1] + 100
    assert gw.pages()[:3] == [0, stopped - 100, stopped]  # the first page, then on from the cursor


def test_one_sweeper_walks_a_region_at_a_time_and_the_next_takes_over_where_it_stopped(
        tmp_path: Path, clock: Clock) -> None:
    gw = listing(clock, 1000)
    walking = instance(tmp_path, clock, gw).ledger
    held = walking.take_walk(REGION, lease_s=60)
    assert held is not None
    walking.move_walk(replace(held, offset=500), lease_s=60)

    instance(tmp_path, clock, gw).sweep(Deadline(clock.now + 30, clock))
    assert gw.pages() == [0]  # the first page only: the walk is taken

    gw.listed.clear()
    clock.now += 61  # the walker died: its lease runs out
    instance(tmp_path, clock, gw).sweep(Deadline(clock.now + 30, clock))
    assert gw.pages()[:3] == [0, 400, 500]


def test_a_sweep_lists_each_page_at_most_once_and_wraps_to_the_top(tmp_path: Path,
                                                                   clock: Clock) -> None:
    gw = listing(clock, 500, ago=3600)
    gw.jobs = dict(reversed(gw.jobs.items()))  # newest first: nothing to look at at the end
    r = instance(tmp_path, clock, gw, load_policy("version: 1\ndefault: {action: SKIP, reason: no}"))

    r.sweep(Deadline(clock.now + 120, clock))
    assert gw.pages() == [0, 100, 200, 300, 400]
    cursor = r.ledger.sweep_cursor(REGION)
    assert (cursor.offset, cursor.passes) == (0, 1)

    # Resumed late in the listing: to the end, then from the top down to where it began.
    r.ledger.move_walk(replace(r.ledger.take_walk(REGION, 1.0) or cursor, offset=400), 0.0)
    gw.listed.clear()
    r.sweep(Deadline(clock.now + 120, clock))
    assert gw.pages() == [0, 300, 400, 100, 200]
    assert r.ledger.sweep_cursor(REGION).offset == 300


def test_once_a_whole_pass_listed_oldest_first_each_sweep_also_lists_the_end(
        tmp_path: Path, clock: Clock) -> None:
    gw = listing(clock, 2000)
    r = instance(tmp_path, clock, gw)
    r.sweep(Deadline(clock.now + 5, clock))
    assert not r.ledger.sweep_cursor(REGION).ascending  # part of a pass proves nothing
    r.sweep(Deadline(clock.now + 300, clock))
    assert r.ledger.sweep_cursor(REGION).ascending

    gw.fail("job-young001", end(clock))  # lost, at the end of an oldest-first listing
    gw.listed.clear()
    r.sweep(Deadline(clock.now + 5, clock))  # far too short for the walk to reach the end

    assert gw.retried == [["job-young001"]]
    assert gw.pages()[:2] == [0, 1901]  # the first page, then the last, whose first job is old


def test_a_listing_not_oldest_first_gets_no_look_at_its_end(tmp_path: Path, clock: Clock) -> None:
    gw = listing(clock, 2000)
    moved = gw.jobs.pop("job-00000005")  # one old job lists after younger ones
    gw.jobs["job-00000005"] = moved
    r = instance(tmp_path, clock, gw)
    r.sweep(Deadline(clock.now + 300, clock))
    assert r.ledger.sweep_cursor(REGION).passes == 1
    assert not r.ledger.sweep_cursor(REGION).ascending

    gw.fail("job-young001", end(clock))
    gw.listed.clear()
    r.sweep(Deadline(clock.now + 5, clock))
    assert gw.retried == [] and 1901 not in gw.pages()
    r.sweep(Deadline(clock.now + 300, clock))  # the walk finds it in its turn
    assert gw.retried == [["job-young001"]]


def test_a_job_created_long_ago_that_fails_now_among_old_pages_is_found_by_the_walk(
        tmp_path: Path, clock: Clock) -> None:
    gw = listing(clock, 2000)
    r = instance(tmp_path, clock, gw)
    r.sweep(Deadline(clock.now + 300, clock))
    assert r.ledger.sweep_cursor(REGION).ascending

    # Listed by creation, not by EndTime: it sits on page 15, among failures hours old.
    gw.jobs["job-00001500"].update(EndTime=end(clock))
    r.sweep(Deadline(clock.now + 300, clock))

    assert gw.retried == [["job-00001500"]]


def test_while_another_instance_flushes_the_sweep_takes_at_most_every_other_turn(
        tmp_path: Path, clock: Clock) -> None:
    gw = TimedGateway(clock, call_s=0.01)
    calls: list[float] = []
    listing = gw.list_jobs

    def timed_list(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(clock.now)
        return listing(*args, **kwargs)

    gw.list_jobs = timed_list  # type: ignore[method-assign]
    crowd(gw, clock, 3000)
    gw.fail("job-flushing", end(clock))
    other = instance(tmp_path, clock, gw)
    other.enqueue(JobRef(REGION, "job-flushing"), "JOB_FAILED", {})
    assert other.ledger.take(100, lease_s=60)  # another instance's flush holds it

    instance(tmp_path, clock, gw).sweep(Deadline(clock.now + 20, clock))

    gaps = [b - a for a, b in pairwise(calls)]
    interval = 1 / Settings().rates["DescribeJobs"]
    assert len(gaps) > 5 and min(gaps) >= 2 * interval - 0.02  # a turn left free between two
