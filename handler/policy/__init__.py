"""The retry policy: what a decision is, what the policy is shown, and the built-in default.

The policy does no I/O and calls nothing back. The retrier asks `policy.wants_details(failure)`;
if True it reads DescribeJob/DescribeTask itself and sets `failure.details`, then asks
`policy.decide(failure)` once. The attempt cap is enforced in one place, the ledger's atomic claim:
a RETRY decision states the counter it spends and that counter's cap; the policy never refuses a
retry because a counter is spent.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from handler.jobs import FailureKey, JobDetail, JobView, iso_epoch
from handler.policy.overrides import JobOverrides, apply_cap, read_overrides

DEFAULT_MAX_ATTEMPTS = 3
BUDGET = "attempts"  # the job's lifetime retry counter


DEFAULT_MAX_FAILURE_AGE_S = 86400.0  # a topic keeps a message for a day at most

# A failure TerminateJob caused, by its text: Tencent documents no wording (the emulator answers
# "terminated by user"). A terminated job ends FAILED like any other; the operator's hold
# (`python -m handler terminate`) is what protects it whatever the text says.
TERMINATED = re.compile(r"(?i)\bterminated\s+by\s+(the\s+)?user\b|\bTerminate(Job|TaskInstance)\b"
                        r"|用户.{0,4}终止")


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
    enforces the cap atomically when it claims the failure, and refuses the claim once the counter
    is at its cap (`over_cap_reason` is then the skip's reason). `cap_from` says where a cap set by
    an override came from. `delay_s` counts from the failure's EndTime. `notes` are warnings for the
    log (override values that were ignored); the retrier writes them with its correlation id."""

    action: Action
    rule: str
    reason: str
    delay_s: float = 0.0
    counter: str = BUDGET
    cap: int = DEFAULT_MAX_ATTEMPTS
    fleet: FleetBudget | None = None
    cap_from: str | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def skip(cls, rule: str, reason: str, notes: tuple[str, ...] = ()) -> RetryDecision:
        return cls(Action.SKIP, rule, reason, notes=notes)

    @property
    def over_cap_reason(self) -> str:
        """The reason of a skip when the ledger refuses this retry because its counter is spent."""
        source = f" (cap from {self.cap_from})" if self.cap_from else ""
        if self.counter == BUDGET:
            return f"max_attempts: the job's cap of {self.cap} retries is spent{source}"
        return f"max_uncounted: the cap of {self.cap} {self.counter} retries is spent{source}"


@dataclass(frozen=True)
class JobHistory:
    """What the ledger remembers of a job: retries spent per counter."""

    counters: dict[str, int] = field(default_factory=dict)

    def spent(self, counter: str = BUDGET) -> int:
        return self.counters.get(counter, 0)


@dataclass
class Failure:
    """One verified failure, as the policy sees it. `details` (DescribeJob + DescribeTask) is given
    by the caller when `Policy.wants_details` says so, else None. `event_name` and `event_vars` are
    None/empty for a failure the sweep found (its notice was lost). `rng` draws backoff jitter;
    without one the policy seeds its own from the failure key, so deciding the same failure again
    gives the same delay."""

    key: FailureKey
    job: JobView
    history: JobHistory
    event_name: str | None
    event_vars: dict[str, str]
    now: float
    details: JobDetail | None = None
    rng: random.Random | None = None
    # The failure's StateReason as its notice gave it (Batch.StateReason), when a notice gave one
    # for this failure: read for nothing, unlike `details`.
    said: str | None = None


class DetailsMissing(RuntimeError):
    """`decide` reached a rule that needs DescribeJob/DescribeTask, but `failure.details` is None: the
    caller skipped `wants_details`. A programming error, never a property of the job."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"rule {rule!r} needs the job's details (DescribeJob/DescribeTask) and "
                         "failure.details is None: ask policy.wants_details(failure) first")
        self.rule = rule


class Policy(Protocol):
    # Failures older than this are left alone, and the sweep does not look further back.
    max_failure_age_s: float
    # Give-up outcomes that notify operators; None = the environment's default.
    notify_outcomes: frozenset[str] | None

    def in_scope(self, view: JobView) -> bool:
        """For the sweep: False only if this failure, seen without a notice, would certainly be
        skipped, as the listing alone shows (no API call)."""
        ...

    def wants_details(self, failure: Failure) -> bool:
        """True when deciding this failure needs DescribeJob/DescribeTask and `failure.details` is
        None."""
        ...

    def decide(self, failure: Failure) -> RetryDecision: ...


def terminated_by_user(details: JobDetail | None, said: str | None = None) -> str | None:
    """The failure text that says the job was terminated, if one does: the reason its notice gave
    (`said`), or, where the details were read, the job's or a failed instance's StateReason or
    StateDetailedReason."""
    texts = [said]
    if details is not None:
        texts += [details.StateReason, details.StateDetailedReason]
        texts += [t for task in details.failed_tasks for i in task.TaskInstanceSet if i.failed
                  for t in (i.StateReason, i.StateDetailedReason)]
    return next((t for t in texts if t and TERMINATED.search(t)), None)


def failure_age_s(failure: Failure) -> float | None:
    """Seconds since the failure ended; None if its EndTime is not a time."""
    try:
        return failure.now - iso_epoch(failure.key.end_time)
    except ValueError:
        return None


class DefaultPolicy:
    """Without a policy file: retry a FAILED job at most three times in its lifetime, at once. The
    job's own tags still count (`autoretry:disabled`, `autoretry:max-attempts`); a notice's EventVars
    may only lower the cap or disable retries."""

    notify_outcomes: frozenset[str] | None = None

    def __init__(self, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.max_attempts = max_attempts
        self.max_failure_age_s = DEFAULT_MAX_FAILURE_AGE_S

    def _overrides(self, job: JobView, event_vars: dict[str, str]) -> JobOverrides:
        return read_overrides(job.Tags, event_vars, use_tags=True, use_event_vars=True,
                              rule_names=())

    def in_scope(self, view: JobView) -> bool:
        return self._overrides(view, {}).disabled_by is None

    def wants_details(self, failure: Failure) -> bool:
        return False

    def decide(self, failure: Failure) -> RetryDecision:
        ov = self._overrides(failure.job, failure.event_vars)
        notes = ov.ignored
        said = "".join(f"; ignored {n}" for n in notes)
        if ov.disabled_by:
            return RetryDecision.skip("override", f"disabled_by_tag: {ov.disabled_by}{said}", notes)
        # Only what the notice said: the built-in policy reads no details (see terminated_by_user).
        if (text := terminated_by_user(None, failure.said)) is not None:
            return RetryDecision.skip("terminated", f"terminated_by_user: {text[:120]!r} "
                                      f"(TerminateJob, as its notice said){said}", notes)
        cap = apply_cap(self.max_attempts, ov)
        notes += cap.ignored
        said += "".join(f"; ignored {n}" for n in cap.ignored)
        spent = failure.history.spent()
        source = f" (cap from {cap.source})" if cap.source else ""
        return RetryDecision(Action.RETRY, "default", f"{retry_words(BUDGET, spent, cap.cap)}{source}"
                             f"{said}", cap=cap.cap, cap_from=cap.source, notes=notes)


def retry_words(counter: str, spent: int, cap: int) -> str:
    """`retry 2 of 3` for people; the ledger, not these words, decides whether the retry happens."""
    kind = "retry" if counter == BUDGET else f"{counter} retry"
    if spent >= cap:
        return f"{kind} {spent + 1} of {cap}: over the cap, the ledger will refuse it"
    return f"{kind} {spent + 1} of {cap}"
