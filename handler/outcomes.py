"""The words every decision ends in: one vocabulary for the log, the ledger, the CLI and the docs."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    # a retry was made, or shown to have been made
    RETRIED = "retried"  # RetryJobs accepted the job
    CONFIRMED = "confirmed"  # the job left a failure after an earlier call whose answer was lost
    # the failure is left alone, for good
    SKIPPED = "skipped"  # a policy rule said SKIP
    MAX_ATTEMPTS = "max_attempts"  # the job's retry budget is spent
    BUDGET_EXHAUSTED = "budget_exhausted"  # the fleet's retry budget for this window is spent
    REJECTED = "rejected"  # the API refused the job (it names the reason)
    NOT_FOUND = "not_found"  # DescribeJobs does not know the job
    NOT_FAILED = "not_failed"  # the job is not FAILED (running again, or succeeded)
    DUPLICATE = "duplicate"  # this failure was already decided
    HELD = "held"  # the operator holds the job (`hold`, `terminate`): this failure is never retried
    # the failure will be looked at again
    DEFERRED = "deferred"  # a backoff: due later
    # someone else holds the failure's claim; looked at again when it ends (before 2026-12 this
    # outcome was called "held", in log lines only: no ledger record kept it)
    IN_FLIGHT = "in_flight"
    AMBIGUOUS = "ambiguous"  # RetryJobs' answer was lost; the job is re-read before anything else
    RELEASED = "released"  # a claim given back: the call was certainly not made
    CLAIMED = "claimed"  # a claim taken; the call is under way
    DRY_RUN = "dry_run"  # AUTORETRY_DRY_RUN: the decision was RETRY, nothing was called


# Outcomes that end a failure without a retry (each counts as a skip in the metrics).
SKIP_OUTCOMES = frozenset({Outcome.SKIPPED, Outcome.MAX_ATTEMPTS, Outcome.BUDGET_EXHAUSTED,
                           Outcome.REJECTED, Outcome.NOT_FOUND, Outcome.NOT_FAILED,
                           Outcome.DUPLICATE})
# Outcomes after which nobody will hear of the failure again unless told: a job given up.
GIVE_UP_OUTCOMES = frozenset({Outcome.SKIPPED, Outcome.MAX_ATTEMPTS, Outcome.BUDGET_EXHAUSTED,
                              Outcome.REJECTED})
