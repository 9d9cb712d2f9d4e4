"""The retry policy: what a decision is, what the policy is shown, and the built-in default.

The retrier asks `policy.decide(failure)` once per verified failure. The policy does no I/O of its
own: facts that cost an API call (`failure.details()`) are fetched only when a rule asks for them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from handler.jobs import FailureKey, JobDetail, JobView

DEFAULT_MAX_ATTEMPTS = 3
BUDGET = "attempts"  # the job's lifetime retry counter


DEFAULT_MAX_FAILURE_AGE_S = 86400.0  # a topic keeps a message for a day at most


@dataclass(frozen=True)
class FleetBudget:
    """At most `max_retries` retries across the whole fleet in any `window_s` window (fixed windows)."""

    max_retries: int
    window_s: float


class Action(StrEnum):
    RETRY = "RETRY"
    SKIP = "SKIP"


@dataclass(frozen=True)
class RetryDecision:
    """What to do with one failure, with the rule that said so and a reason a person can read.

    `counter` names the per-job counter a retry spends (`attempts` for the job's budget, another
    name for retries that must not spend it) and `cap` the most that counter may reach; the ledger
    enforces the cap atomically when it claims the failure. `delay_s` counts from the failure's
    EndTime."""

    action: Action
    rule: str
    reason: str
    delay_s: float = 0.0
    counter: str = BUDGET
    cap: int = DEFAULT_MAX_ATTEMPTS
    fleet: FleetBudget | None = None

    @classmethod
    def skip(cls, rule: str, reason: str) -> RetryDecision:
        return cls(Action.SKIP, rule, reason)


@dataclass(frozen=True)
class JobHistory:
    """What the ledger remembers of a job: retries spent per counter."""

    counters: dict[str, int] = field(default_factory=dict)

    def spent(self, counter: str = BUDGET) -> int:
        return self.counters.get(counter, 0)


@dataclass
class Failure:
    """One verified failure, as the policy sees it. `rng` draws backoff jitter; without one the
    policy seeds its own from the failure key, so deciding the same failure again gives the same
    delay."""

    key: FailureKey
    job: JobView
    history: JobHistory
    event_name: str | None
    event_vars: dict[str, str]
    now: float
    fetch_details: Callable[[], JobDetail]
    rng: random.Random | None = None
    _details: JobDetail | None = None

    def details(self) -> JobDetail:
        if self._details is None:
            self._details = self.fetch_details()
        return self._details

    @property
    def details_fetched(self) -> bool:
        return self._details is not None


class Policy(Protocol):
    # Failures older than this are left alone, and the sweep does not look further back.
    max_failure_age_s: float

    def decide(self, failure: Failure) -> RetryDecision: ...


class DefaultPolicy:
    """Retry a FAILED job at most three times in its lifetime; the first retry at once."""

    def __init__(self, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.max_attempts = max_attempts
        self.max_failure_age_s = DEFAULT_MAX_FAILURE_AGE_S

    def decide(self, failure: Failure) -> RetryDecision:
        spent = failure.history.spent()
        if spent >= self.max_attempts:
            return RetryDecision.skip(
                "default", f"max_attempts: {spent} of {self.max_attempts} retries spent"
            )
        return RetryDecision(
            Action.RETRY,
            "default",
            f"retry {spent + 1} of {self.max_attempts}",
            cap=self.max_attempts,
        )
