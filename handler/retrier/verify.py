"""Verification: what the API's view of a job and the ledger's memory of it say about a queue entry,
before any policy is asked. Pure: it returns values; the flush writes them and logs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handler.jobs import FailureKey, JobView
from handler.ledger import FailureState, Look, QueueEntry
from handler.ledger.records import generation, with_generation
from handler.observe import Observer
from handler.outcomes import Outcome


@dataclass(frozen=True)
class Decided:
    """How one entry's turn ends, as the decision line and the job's record show it."""

    outcome: Outcome
    action: str  # RETRY or SKIP
    rule: str
    reason: str
    key: FailureKey | None = None
    due_at: float | None = None  # deferred or in flight: when to look again
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checked:
    """The entry after verification: pending failures the job has left (our unanswered calls were
    applied), and either how it ends now or the failure that the policy must decide."""

    confirmed: list[FailureKey]
    decided: Decided | None = None
    failure: FailureKey | None = None
    refailed: bool = False  # FAILED again after our retry with the EndTime of the failure retried


def check(entry: QueueEntry, view: JobView | None, look: Look | None, now: float,
          refail_after_s: float) -> Checked:
    """Verify one entry against the API's view and the ledger. A FAILED job showing the EndTime of
    a failure we retried failed again if it was seen out of FAILED since, or if that retry is more
    than `refail_after_s` old (a retried job does not stay FAILED that long); until then it is the
    same failure, and a duplicate."""
    job = entry.job
    if view is None:
        return Checked([], Decided(Outcome.NOT_FOUND, "SKIP", "verify",
                                   "job not found by DescribeJobs"))
    if view.bad_end_time:
        return Checked([], Decided(Outcome.SKIPPED, "SKIP", "verify",
                                   f"bad_end_time: FAILED with EndTime {view.EndTime!r}, not a "
                                   "time; the failure cannot be keyed"))
    current = look.current if look is not None else view.failure_key(job.region)
    pending = look.pending if look is not None else []
    # The job left those failures: a RetryJobs whose answer we lost (or a crashed flush) did reach
    # it. Count them as done, never repeat them.
    confirmed = [p for p in pending if p != current]
    if current is None:
        return Checked(confirmed, Decided(Outcome.NOT_FAILED, "SKIP", "verify",
                                          f"job is {view.JobState}, not FAILED"))
    seen = look.state if look is not None else None
    failure, refailed = current, False
    if seen is not None:
        state, lease_until = seen
        if look is not None and look.failed_again(now, refail_after_s):
            _, n = generation(current)
            failure, refailed = with_generation(current, n + 1), True
        elif state in (FailureState.RETRIED, FailureState.SKIPPED):
            return Checked(confirmed, Decided(Outcome.DUPLICATE, "SKIP", "dedupe",
                                              f"failure already {state.lower()}", current))
        elif lease_until > now:
            # Claimed by a flush in progress, or awaiting a re-read after an unclear answer:
            # come back when that lease ends, in case its holder never settles it.
            return Checked(confirmed, Decided(Outcome.IN_FLIGHT, "RETRY", "dedupe",
                                              f"failure {state.lower()} under a lease", current,
                                              due_at=lease_until + 0.001))
    if look is not None and look.hold is not None:
        # The operator's word is final: no policy is asked. (The claim checks the hold again, in
        # its own read, for a hold written since this look.)
        return Checked(confirmed, Decided(Outcome.HELD, "SKIP", "hold", look.hold.reason, failure),
                       refailed=refailed)
    return Checked(confirmed, failure=failure, refailed=refailed)


def log_decision(observer: Observer, entry: QueueEntry, d: Decided) -> None:
    """The one decision line: job, failure key, rule, reason, outcome."""
    observer.decision(job=entry.job.job_id, region=entry.job.region, event=entry.event_name,
                      failure_key=str(d.key) if d.key else None, action=d.action, rule=d.rule,
                      reason=d.reason, outcome=str(d.outcome), **d.extra)


def confirmed_line(observer: Observer, entry: QueueEntry, key: FailureKey, reason: str) -> None:
    log_decision(observer, entry, Decided(Outcome.CONFIRMED, "RETRY", "verify", reason, key))

