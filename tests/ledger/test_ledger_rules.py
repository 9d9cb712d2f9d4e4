"""The ledger's rules, run against every store."""

from __future__ import annotations

import threading

from handler.jobs import FailureKey, JobRef
from handler.ledger import ClaimOutcome, FailureState, Ledger, Store
from handler.ledger.turns import Knocks
from handler.policy import Action, FleetBudget, RetryDecision

from .conftest import FakeClock

JOB = JobRef("ap-guangzhou", "job-abcd1234")
KEY = FailureKey("ap-guangzhou", "job-abcd1234", "2026-11-24T10:00:00Z")


def retry(cap: int = 3, counter: str = "attempts", fleet: FleetBudget | None = None) -> RetryDecision:
    return RetryDecision(Action.RETRY, "test", "because", cap=cap, counter=counter, fleet=fleet)


def test_duplicate_enqueues_keep_one_entry_counting_notices(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    for _ in range(3):
        ledger.enqueue(JOB, event_name="JOB_FAILED")
    entries = ledger.take(100, lease_s=30)
    assert [e.job for e in entries] == [JOB]
    assert entries[0].notices == 3


def test_taken_entry_is_not_taken_again_until_its_lease_expires(store: Store, clock: FakeClock) -> None:
    a, b = Ledger(store, clock=clock, owner="a"), Ledger(store, clock=clock, owner="b")
    a.enqueue(JOB)
    assert len(a.take(100, lease_s=30)) == 1
    assert b.take(100, lease_s=30) == []
    clock.advance(31)
    taken = b.take(100, lease_s=30)
    assert [e.owner for e in taken] == ["b"]


def test_finish_removes_the_entry(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.enqueue(JOB)
    [entry] = ledger.take(10, 30)
    ledger.finish(entry)
    clock.advance(100)
    assert ledger.take(10, 30) == []


def test_notice_during_a_flush_survives_finish(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.enqueue(JOB)
    [entry] = ledger.take(10, 30)
    ledger.enqueue(JOB, event_name="JOB_FAILED")  # the job failed again while we worked
    ledger.finish(entry)
    assert [e.job for e in ledger.take(10, 30)] == [JOB]


def test_defer_makes_the_entry_due_later(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.enqueue(JOB)
    [entry] = ledger.take(10, 30)
    ledger.defer(entry, clock.now + 50, backoff_step=2)
    clock.advance(49)
    assert ledger.take(10, 30) == []
    clock.advance(2)
    [again] = ledger.take(10, 30)
    assert again.backoff_step == 2


def test_a_failure_is_claimed_once(store: Store, clock: FakeClock) -> None:
    a, b = Ledger(store, clock=clock, owner="a"), Ledger(store, clock=clock, owner="b")
    assert a.claim(KEY, retry(), lease_s=30) == ClaimOutcome.CLAIMED
    assert b.claim(KEY, retry(), lease_s=30) == ClaimOutcome.DUPLICATE
    a.record_retried(KEY)
    clock.advance(10_000)
    assert b.claim(KEY, retry(), lease_s=30) == ClaimOutcome.DUPLICATE
    assert a.state(KEY) == (FailureState.RETRIED, 0.0)
    assert a.history(JOB).spent() == 1


def test_concurrent_claims_of_one_failure_let_exactly_one_through(store: Store) -> None:
    ledgers = [Ledger(store, owner=f"o{i}") for i in range(8)]
    results: list[ClaimOutcome] = []
    lock = threading.Lock()

    def claim(ledger: Ledger) -> None:
        outcome = ledger.claim(KEY, retry(), lease_s=30)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=claim, args=(ld,)) for ld in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(ClaimOutcome.CLAIMED) == 1
    assert results.count(ClaimOutcome.DUPLICATE) == 7
    assert ledgers[0].history(JOB).spent() == 1


def test_claims_stop_at_the_cap(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    for i in range(3):
        key = FailureKey(JOB.region, JOB.job_id, f"2026-11-24T10:00:0{i}Z")
        assert ledger.claim(key, retry(cap=3), 30) == ClaimOutcome.CLAIMED
        ledger.record_retried(key)
    fourth = FailureKey(JOB.region, JOB.job_id, "2026-11-24T10:00:09Z")
    assert ledger.claim(fourth, retry(cap=3), 30) == ClaimOutcome.OVER_CAP
    assert ledger.history(JOB).spent() == 3


def test_separate_counters_do_not_spend_the_budget(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    assert ledger.claim(KEY, retry(cap=1, counter="infra"), 30) == ClaimOutcome.CLAIMED
    assert ledger.history(JOB).spent("attempts") == 0
    assert ledger.history(JOB).spent("infra") == 1


def test_expired_claim_is_taken_over_without_spending_again(store: Store, clock: FakeClock) -> None:
    a, b = Ledger(store, clock=clock, owner="a"), Ledger(store, clock=clock, owner="b")
    assert a.claim(KEY, retry(), 30) == ClaimOutcome.CLAIMED
    clock.advance(31)  # a died between claim and record
    assert b.claim(KEY, retry(), 30) == ClaimOutcome.TAKEN_OVER
    b.record_retried(KEY)
    a.release(KEY, "late")  # a's late release must not undo b's work
    assert b.state(KEY) == (FailureState.RETRIED, 0.0)
    assert b.history(JOB).spent() == 1


def test_release_refunds_and_lets_the_failure_be_claimed_again(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.claim(KEY, retry(), 30)
    ledger.release(KEY, "throttled")
    assert ledger.history(JOB).spent() == 0
    assert ledger.state(KEY) is None
    assert ledger.claim(KEY, retry(), 30) == ClaimOutcome.CLAIMED


def test_ambiguous_claim_stays_pending_until_confirmed(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.claim(KEY, retry(), 30)
    ledger.mark_ambiguous(KEY, clock.now + 60, "timeout")
    assert ledger.pending(JOB) == [KEY]
    assert ledger.state(KEY) == (FailureState.AMBIGUOUS, clock.now + 60)  # leased until the re-check
    clock.advance(61)
    state = ledger.state(KEY)
    assert state is not None and state[1] <= clock.now  # the re-check is due
    ledger.confirm_retried(KEY)
    assert ledger.pending(JOB) == []
    assert ledger.state(KEY) == (FailureState.RETRIED, 0.0)
    assert ledger.history(JOB).spent() == 1


def test_skipped_failure_is_never_claimed(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    assert ledger.record_skip(KEY, "no-oom", "exit 137")
    assert ledger.claim(KEY, retry(), 30) == ClaimOutcome.DUPLICATE
    job = ledger.job(JOB)
    assert job is not None
    assert job["decisions"][-1]["reason"] == "exit 137"


def test_skip_over_an_expired_held_claim_settles_it_and_refunds_its_spend(
        store: Store, clock: FakeClock) -> None:
    """A policy that now says SKIP for a failure whose unclear call never reached the job (or
    whose flusher died): the failure is skipped for good, not left pending for ever."""
    for hold in ("ambiguous", "crashed"):
        key = FailureKey("ap-guangzhou", "job-abcd1234", f"2026-11-24T10:00:0{len(hold) % 10}Z")
        ledger = Ledger(store, clock=clock)
        ledger.claim(key, retry(), 30)
        if hold == "ambiguous":
            ledger.mark_ambiguous(key, clock.now + 60, "timeout")
        assert not ledger.record_skip(key, "no-more", "policy changed")  # its lease is live
        clock.advance(61)
        assert ledger.record_skip(key, "no-more", "policy changed")
        assert ledger.pending(JOB) == []
        assert ledger.state(key) == (FailureState.SKIPPED, 0.0)
        assert ledger.history(JOB).spent() == 0
        assert ledger.claim(key, retry(), 30) == ClaimOutcome.DUPLICATE


def test_fleet_budget_caps_retries_per_window(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    fleet = FleetBudget(max_retries=2, window_s=60)
    outcomes = [
        ledger.claim(FailureKey("ap-guangzhou", f"job-fleet00{i}", "t"), retry(fleet=fleet), 30)
        for i in range(3)
    ]
    assert outcomes == [ClaimOutcome.CLAIMED, ClaimOutcome.CLAIMED, ClaimOutcome.OVER_FLEET_BUDGET]
    clock.advance(60)
    later = FailureKey("ap-guangzhou", "job-fleet009", "t")
    assert ledger.claim(later, retry(fleet=fleet), 30) == ClaimOutcome.CLAIMED


def test_a_turn_comes_one_spacing_after_the_previous_call_has_its_answer(store: Store,
                                                                        clock: FakeClock) -> None:
    """A call arrives somewhere between its grant and its answer: so the next turn, whichever
    instance asks, comes 1/rate after the previous call's answer, however early its grant was.
    Arrivals are then 1/rate apart, within a limit that counts a sliding window of one second and
    within a token bucket of any burst. A call never reported done frees the turn once it could
    no longer arrive."""
    a, b = Ledger(store, clock=clock, owner="a"), Ledger(store, clock=clock, owner="b")
    one = a.take_token("RetryJobs", 2.0, window_s=1.0, call_s=5.0).slot
    assert one == clock.now
    clock.advance(0.7)  # a grant's 1/rate has passed, and the first call still has no answer
    held = b.take_token("RetryJobs", 2.0, window_s=1.0, call_s=5.0)
    assert held.slot is None and 0 < held.wait_s <= 0.05
    a.call_done("RetryJobs", one)
    wait = b.take_token("RetryJobs", 2.0, window_s=1.0, call_s=5.0)
    assert wait.slot is None and abs(wait.wait_s - 0.5) < 1e-6
    assert a.take_token("DescribeJobs", 2.0).slot is not None  # turns are per action
    clock.advance(0.5)
    two = b.take_token("RetryJobs", 2.0, window_s=1.0, call_s=5.0).slot
    assert two is not None
    # `two` never reports done (its caller died): the turn frees call_s + 1/rate after its grant
    clock.advance(5.0)
    assert a.take_token("RetryJobs", 2.0, window_s=1.0, call_s=5.0).slot is None
    clock.now = two + 5.0 + 0.5
    assert a.take_token("RetryJobs", 2.0, window_s=1.0, call_s=5.0).slot is not None


def test_only_one_drainer_at_a_time_until_released_or_expired(store: Store, clock: FakeClock) -> None:
    a, b = Ledger(store, clock=clock, owner="a"), Ledger(store, clock=clock, owner="b")
    assert a.acquire_drainer(10)
    assert not b.acquire_drainer(10)
    a.release_drainer()
    assert b.acquire_drainer(10)
    clock.advance(11)  # b died while draining
    assert a.acquire_drainer(10)


def test_a_drainer_keeps_its_short_lease_while_it_renews_and_loses_it_once_it_stops(
        store: Store, clock: FakeClock) -> None:
    a, b = Ledger(store, clock=clock, owner="a"), Ledger(store, clock=clock, owner="b")
    assert a.acquire_drainer(10)
    holder = a.holder
    renewed: list[bool] = []
    for _ in range(4):  # 32 s of work, renewed every 8 s from another thread (its heartbeat)
        clock.advance(8)
        thread = threading.Thread(target=lambda: renewed.append(a.renew_drainer(10, holder)))
        thread.start()
        thread.join()
        assert not b.acquire_drainer(10, knock=["q/1"])
    assert renewed == [True] * 4
    knocks = a.collect_knocks(10)  # a look at the record renews it too
    assert knocks is not None and knocks.keys == ("q/1",)
    clock.advance(9)
    assert not b.acquire_drainer(10)
    clock.advance(11)  # `a` died: nobody renewed
    assert b.acquire_drainer(10)
    assert not a.renew_drainer(10, holder)  # a holder that comes back finds it another's
    assert a.collect_knocks(10) is None
    assert b.collect_knocks(10) == Knocks()


def test_next_due_reports_the_earliest_entry_within_the_horizon(store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.enqueue(JOB, due_at=clock.now + 3)
    assert ledger.next_due(1) is None
    assert ledger.next_due(5) == clock.now + 3


def test_a_retried_failure_shown_again_after_the_job_left_failed_is_unseen_for_the_sweep(
        store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    ledger.claim(KEY, retry(), 30)
    ledger.record_retried(KEY)
    assert ledger.unseen([KEY], refail_after_s=300) == set()  # just retried: the same failure
    ledger.apply([ledger.note_step(JOB, None, "not_failed", "verify", "job is RUNNING")])
    assert ledger.unseen([KEY], refail_after_s=300) == {KEY}  # seen running since: failed again
    assert ledger.unseen([KEY]) == set()  # without the rule, only never-seen failures count


def test_decisions_that_change_no_failure_are_kept_on_the_job_and_repeats_counted(
        store: Store, clock: FakeClock) -> None:
    ledger = Ledger(store, clock=clock)
    for _ in range(3):
        ledger.apply([ledger.note_step(JOB, None, "not_found", "verify", "job not found")])
    ledger.claim(KEY, retry(), 30)
    ledger.record_retried(KEY)
    for _ in range(2):
        ledger.apply([ledger.note_step(JOB, KEY, "duplicate", "dedupe", "failure already retried")])
    record = ledger.job(JOB)
    assert record is not None
    by_outcome = {d["outcome"]: d for d in record["decisions"]}
    assert by_outcome["not_found"]["repeats"] == 2  # three notices, one decision kept
    assert by_outcome["retried"]["duplicates"] == 2  # the duplicates count on the retry


def test_two_threads_of_one_instance_are_two_drainers_to_the_lease(store: Store, clock: FakeClock) -> None:
    # `serve` answers each push on a thread of one process (one ledger instance): only one of them
    # may drain, or every push of a burst waits for API turns inside its answer.
    ledger = Ledger(store, clock=clock)
    assert ledger.acquire_drainer(10)
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(ledger.acquire_drainer(10)))
    thread.start()
    thread.join()
    assert other == [False]
    assert ledger.acquire_drainer(10)  # the holder renews its own lease
    ledger.release_drainer()
    thread = threading.Thread(target=lambda: other.append(ledger.acquire_drainer(10)))
    thread.start()
    thread.join()
    assert other == [False, True]
