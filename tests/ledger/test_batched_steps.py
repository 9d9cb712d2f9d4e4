"""A batch of ledger steps costs one read and one commit (per `max_writes` of the store), on every
store; a step that loses a race to another instance is run again on its own, with the same result
as if the steps had run one after another."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from handler.jobs import FailureKey, JobRef
from handler.ledger import ClaimOutcome, FailureState, Ledger, Record, Store, Write
from handler.policy import Action, FleetBudget, RetryDecision

from .conftest import FakeClock

REGION = "ap-guangzhou"
END = "2026-11-24T10:00:00Z"


class CountingStore:
    """The store as it is, counting round trips; `before_commit` may act as another instance."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.gets = self.commits = 0
        self.before_commit: Any = None
        max_writes = getattr(inner, "max_writes", None)
        if max_writes is not None:
            self.max_writes = max_writes

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        self.gets += 1
        return self.inner.get(keys)

    def commit(self, writes: Sequence[Write]) -> bool:
        self.commits += 1
        if self.before_commit is not None:
            act, self.before_commit = self.before_commit, None
            act()
        return self.inner.commit(writes)

    def due(self, now: float, limit: int) -> list[str]:
        return self.inner.due(now, limit)

    def scan(self, prefix: str) -> Any:
        return self.inner.scan(prefix)

    def close(self) -> None:
        self.inner.close()


def retry(cap: int = 3, fleet: FleetBudget | None = None) -> RetryDecision:
    return RetryDecision(Action.RETRY, "test", "because", cap=cap, fleet=fleet)


def keys(n: int) -> list[FailureKey]:
    return [FailureKey(REGION, f"job-{i:08d}", END) for i in range(n)]


def test_a_batch_of_100_claims_is_one_read_and_one_commit_per_store_limit(store: Store,
                                                                         clock: FakeClock) -> None:
    counted = CountingStore(store)
    ledger = Ledger(counted, clock=clock)  # type: ignore[arg-type]
    outcomes = ledger.apply([ledger.claim_step(k, retry(), 30) for k in keys(100)])
    assert outcomes == [ClaimOutcome.CLAIMED] * 100
    # two writes a claim (the failure and its job); a store with a limit splits the batch
    limit = getattr(store, "max_writes", None)
    commits = 1 if limit is None else math.ceil(200 / limit)
    assert (counted.gets, counted.commits) == (commits, commits)
    assert all(ledger.state(k) is not None for k in keys(100))


def test_a_batch_of_100_settlements_with_their_queue_entries_is_one_read_and_one_commit(
        store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    for k in keys(50):
        ledger.enqueue(k.job)
    entries = ledger.take(100, 30)
    ledger.apply([ledger.claim_step(k, retry(), 30) for k in keys(50)])
    counted = CountingStore(store)
    batched = Ledger(counted, clock=clock, owner=ledger.owner)  # type: ignore[arg-type]
    steps = [s for e in entries for s in (batched.retried_step(FailureKey(REGION, e.job.job_id, END)),
                                          batched.finish_step(e))]
    batched.apply(steps)
    limit = getattr(store, "max_writes", None)
    commits = 1 if limit is None else math.ceil(150 / limit)  # failure + job + queue entry each
    assert counted.commits == commits
    assert {ledger.state(k) for k in keys(50)} == {(FailureState.RETRIED, 0.0)}
    clock.advance(100)
    assert ledger.take(100, 30) == []


def test_steps_on_one_record_in_a_batch_chain_as_if_run_one_after_another(store: Store,
                                                                          clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    fleet = FleetBudget(max_retries=3, window_s=3600)
    outcomes = ledger.apply([ledger.claim_step(k, retry(fleet=fleet), 30) for k in keys(5)])
    # the fleet's budget record is shared by every claim: three fit, two do not
    assert outcomes == [ClaimOutcome.CLAIMED] * 3 + [ClaimOutcome.OVER_FLEET_BUDGET] * 2
    key = keys(1)[0]
    same = ledger.apply([ledger.claim_step(key, retry(), 30), ledger.claim_step(key, retry(), 30)])
    assert same == [ClaimOutcome.DUPLICATE, ClaimOutcome.DUPLICATE]  # claimed above already


def test_a_batch_that_loses_a_race_runs_each_step_again_on_fresh_reads(store: Store,
                                                                       clock: FakeClock) -> None:
    counted = CountingStore(store)
    ledger = Ledger(counted, clock=clock, owner="us")  # type: ignore[arg-type]
    other = Ledger(store, clock=clock, owner="them")
    batch = keys(4)
    counted.before_commit = lambda: other.claim(batch[2], retry(), 30)  # another instance wins one
    outcomes = ledger.apply([ledger.claim_step(k, retry(), 30) for k in batch])
    assert outcomes == [ClaimOutcome.CLAIMED, ClaimOutcome.CLAIMED, ClaimOutcome.DUPLICATE,
                        ClaimOutcome.CLAIMED]
    assert [ledger.history(k.job).spent() for k in batch] == [1, 1, 1, 1]  # nothing spent twice


def test_a_flush_of_100_jobs_costs_a_handful_of_store_round_trips(store: Store,
                                                                  clock: FakeClock) -> None:
    from handler.policy import DefaultPolicy
    from handler.retrier import Deadline, Retrier
    from tests.core.fakes import FakeGateway

    counted = CountingStore(store)
    ledger = Ledger(counted, clock=clock)  # type: ignore[arg-type]
    gateway = FakeGateway()
    for i in range(100):
        gateway.fail(f"job-{i:08d}", END)
        ledger.enqueue(JobRef(REGION, f"job-{i:08d}"))
    counted.gets = counted.commits = 0
    report = Retrier(ledger, gateway, DefaultPolicy(), clock=clock).flush(Deadline(clock() + 60, clock))
    assert len(report.retried) == 100 and gateway.retried == [[f"job-{i:08d}" for i in range(100)]]
    # take, verify, claim, record (+ a turn of each API call); per job it used to be ~10
    limit = getattr(store, "max_writes", None)
    assert counted.gets + counted.commits <= (16 if limit is None else 24), \
        (counted.gets, counted.commits)
