"""The operator's hold, run against every store: read inside the claim, so a hold written before a
claim is seen by it whichever instance claims; it lasts until released."""

from __future__ import annotations

from handler.jobs import FailureKey, JobRef
from handler.ledger import ClaimOutcome, FailureState, Ledger, Store
from handler.policy import Action, RetryDecision

from .conftest import FakeClock

JOB = JobRef("ap-guangzhou", "job-abcd1234")
KEY = FailureKey("ap-guangzhou", "job-abcd1234", "2026-11-24T10:00:00Z")
LATER = FailureKey("ap-guangzhou", "job-abcd1234", "2026-11-24T11:00:00Z")


def retry() -> RetryDecision:
    return RetryDecision(Action.RETRY, "test", "because", cap=3)


def test_a_claim_on_a_job_another_instance_held_is_refused_spends_nothing_and_is_kept_as_held(
        store: Store, clock: FakeClock) -> None:
    operator, function = Ledger(store, clock=clock, owner="op"), Ledger(store, clock=clock, owner="fn")
    operator.hold_job(JOB, "bad input; fixing the data")
    assert function.claim(KEY, retry(), lease_s=30) == ClaimOutcome.HELD
    assert function.claim(KEY, retry(), lease_s=30) == ClaimOutcome.HELD  # and again
    assert function.state(KEY) == (FailureState.HELD, 0.0)
    assert function.history(JOB).spent() == 0 and function.pending(JOB) == []
    record = function.job(JOB)
    assert record is not None
    [decision] = record["decisions"]
    assert (decision["outcome"], decision["rule"], decision["reason"]) == (
        "held", "hold", "bad input; fixing the data")
    assert decision["repeats"] == 1  # the second claim counted on the one decision


def test_a_hold_outlasts_the_ledgers_retention_until_it_is_released(store: Store,
                                                                     clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock, retention_s=3600)
    hold, before = ledger.hold_job(JOB, "leave it", command="terminate")
    assert before is None and (hold.reason, hold.command, hold.since) == ("leave it", "terminate",
                                                                          clock.now)
    clock.advance(30 * 86400)
    assert ledger.hold_on(JOB) == hold
    assert ledger.claim(KEY, retry(), lease_s=30) == ClaimOutcome.HELD
    again, replaced = ledger.hold_job(JOB, "still leave it")
    assert replaced == hold and (again.reason, again.since) == ("still leave it", hold.since)
    assert ledger.release_job(JOB) == again
    assert ledger.hold_on(JOB) is None and ledger.release_job(JOB) is None


def test_after_the_release_the_failure_that_came_while_held_is_claimed_afresh_and_spends(
        store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.hold_job(JOB, "wait")
    assert ledger.claim(KEY, retry(), lease_s=30) == ClaimOutcome.HELD
    ledger.release_job(JOB)
    # The sweep does not enqueue it again by itself: the ledger has seen it...
    assert ledger.unseen([KEY]) == set() and ledger.unseen([KEY], refail_after_s=300) == set()
    # ...but its notice, coming again, has it decided as if it had never been held.
    assert ledger.claim(KEY, retry(), lease_s=30) == ClaimOutcome.CLAIMED
    ledger.record_retried(KEY)
    assert ledger.history(JOB).spent() == 1
    assert ledger.claim(LATER, retry(), lease_s=30) == ClaimOutcome.CLAIMED  # a new failure


def test_a_hold_does_not_undo_a_claim_made_before_it(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    assert ledger.claim(KEY, retry(), lease_s=30) == ClaimOutcome.CLAIMED
    ledger.hold_job(JOB, "too late for this one")
    assert ledger.apply([ledger.held_step(KEY, "too late for this one")]) == [False]
    assert ledger.state(KEY) == (FailureState.CLAIMED, clock.now + 30)  # its call may be under way
    ledger.record_retried(KEY)
    assert ledger.claim(LATER, retry(), lease_s=30) == ClaimOutcome.HELD  # the next one is held


def test_a_held_failure_given_up_after_the_release_is_skipped_without_a_refund(
        store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    assert ledger.claim(KEY, retry(), lease_s=30) == ClaimOutcome.CLAIMED
    ledger.record_retried(KEY)
    ledger.hold_job(JOB, "wait")
    assert ledger.apply([ledger.held_step(LATER, "wait")]) == [True]
    ledger.release_job(JOB)
    assert ledger.record_skip(LATER, "r", "skipped by rule")
    assert ledger.state(LATER) == (FailureState.SKIPPED, 0.0)
    assert ledger.history(JOB).spent() == 1  # the held failure had spent nothing to give back
