"""The policy file as data: ordered rules with their conditions, limits, backoff and overrides.

Every condition in a rule's `when` must hold for the rule to match. Conditions on what DescribeJobs
and the notice already gave (event, job name, tags, event vars) are checked first; conditions on
reasons, task names and exit codes need `failure.details` (DescribeJob + DescribeTask) and are
checked only once the cheap ones hold, so a rule that fails early costs no API call. A failure
text is the `StateReason` or the `StateDetailedReason` of the job or instance: a reason condition
holds if either text matches.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from handler.jobs import JobDetail, TaskInstanceView
from handler.notices import JOB_FAILURE_EVENTS
from handler.outcomes import GIVE_UP_OUTCOMES
from handler.policy import (
    BUDGET,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_FAILURE_AGE_S,
    DetailsMissing,
    Failure,
)
from handler.policy.durations import format_duration, parse_duration

UNCOUNTED = "uncounted"  # the counter RETRY_UNCOUNTED spends unless a rule names its own
DEFAULT_MAX_UNCOUNTED = 10
RESERVED_RULE_NAMES = frozenset({"default", "max_failure_age", "override", "terminated"})
# The ledger keeps a failure's record for at least 25 h; a failure it forgot could be retried twice.
MAX_FAILURE_AGE_LIMIT_S = DEFAULT_MAX_FAILURE_AGE_S


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _short(text: object, limit: int = 80) -> str:
    s = repr(text)
    return s if len(s) <= limit else s[: limit - 1] + "…'"


def _shown(items: Iterable[object], limit: int = 6) -> str:
    items = list(items)
    more = f", … {len(items) - limit} more" if len(items) > limit else ""
    return "[" + ", ".join(_short(i, 60) for i in items[:limit]) + more + "]"


Glob = Annotated[str, Field(min_length=1, max_length=512)]
Globs = Annotated[list[Glob], BeforeValidator(_as_list), Field(min_length=1, max_length=50)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
ActionName = Annotated[Literal["RETRY", "SKIP", "RETRY_UNCOUNTED"], BeforeValidator(_upper)]


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
    return value


def _check_events(value: list[str]) -> list[str]:
    known = sorted(JOB_FAILURE_EVENTS)
    for name in value:
        if name not in JOB_FAILURE_EVENTS:
            raise ValueError(f"unknown event {name!r}; allowed: {', '.join(known)}")
    return value


def _presence(value: Any) -> Any:
    """`{key: glob}` or `{key: true}` (present, any value) / `{key: false}` (absent)."""
    if not isinstance(value, dict):
        return value
    out: dict[str, str | bool] = {}
    for key, v in value.items():
        if isinstance(v, bool | str):
            out[str(key)] = v
        elif isinstance(v, int | float):
            out[str(key)] = str(v)  # `version: 2` in YAML is a number; a tag value is text
        else:
            raise ValueError(f"{key!r}: expected a glob such as 'data-*', or true (present) / "
                             f"false (absent), got {v!r}")
    return out


Presence = Annotated[dict[str, str | bool], BeforeValidator(_presence), Field(min_length=1)]


# ---- exit codes ---------------------------------------------------------------------------------

_CODE_TERM = re.compile(r"^(?:(-?\d+)|(-?\d+)\s*-\s*(-?\d+)|(>=|<=|>|<)\s*(-?\d+))$")
CODE_HELP = 'an exit code (137), a range ("1-2") or a bound (">=128", "<0")'


@lru_cache(maxsize=512)
def code_bounds(term: str) -> tuple[float, float]:
    """The inclusive range an exit-code term covers."""
    m = _CODE_TERM.match(term)
    if m is None:
        raise ValueError(f"expected {CODE_HELP}, got {term!r}")
    exact, lo, hi, op, bound = m.groups()
    if exact is not None:
        return float(exact), float(exact)
    if lo is not None:
        if int(lo) > int(hi):
            raise ValueError(f"range {term!r} is empty: write the low end first")
        return float(lo), float(hi)
    n = int(bound)
    return {">=": (n, float("inf")), ">": (n + 1, float("inf")),
            "<=": (float("-inf"), n), "<": (float("-inf"), n - 1)}[op]


def _code_term(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {CODE_HELP}, got {value!r}")
    text = str(value).strip().replace(" ", "")
    code_bounds(text)
    return text


CodeTerm = Annotated[str, BeforeValidator(_code_term)]
CodeTerms = Annotated[list[CodeTerm], BeforeValidator(_as_list), Field(min_length=1, max_length=255)]


class ExitCodes(_Strict):
    """`{in: [...]}` or `{not_in: [...]}`; a bare list (or one code) means `in`."""

    in_: CodeTerms | None = Field(default=None, alias="in")
    not_in: CodeTerms | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ExitCodes:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give exactly one of `in` or `not_in`")
        return self

    def holds(self, code: int) -> bool:
        terms = self.in_ if self.in_ is not None else self.not_in
        assert terms is not None
        inside = any(lo <= code <= hi for lo, hi in map(code_bounds, terms))
        return inside if self.in_ is not None else not inside

    def __str__(self) -> str:
        if self.in_ is not None:
            return "in {" + ", ".join(self.in_) + "}"
        return "not in {" + ", ".join(self.not_in or []) + "}"


def _exit_codes(value: Any) -> Any:
    if isinstance(value, list | int | str) and not isinstance(value, bool):
        return {"in": value}
    return value


# ---- conditions ---------------------------------------------------------------------------------


def _glob_any(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _check_presence(what: str, actual: dict[str, str], wanted: dict[str, str | bool]) -> str | None:
    for key, want in wanted.items():
        have = actual.get(key)
        if want is True and have is None:
            return f"{what}.{key}: absent, rule wants it present"
        if want is False and have is not None:
            return f"{what}.{key}: present ({_short(have)}), rule wants it absent"
        if isinstance(want, str):
            if have is None:
                return f"{what}.{key}: absent, rule wants {want!r}"
            if not fnmatch.fnmatchcase(have, want):
                return f"{what}.{key}: {_short(have)} does not match {want!r}"
    return None


def _texts(*texts: str | None) -> list[str]:
    return [t for t in texts if t]


def _said(texts: list[str]) -> str:
    return " and ".join(_short(t) for t in texts)


def _instance_texts(instances: list[TaskInstanceView]) -> list[str | None]:
    """Each instance's failure text for a message: its reason, with the detailed one if it differs."""
    out: list[str | None] = []
    for i in instances:
        texts = _texts(i.StateReason, i.StateDetailedReason)
        out.append(" / ".join(dict.fromkeys(texts)) or None)
    return out


class When(_Strict):
    """The conditions of one rule; all must hold. An empty `when` matches every failure."""

    event: Annotated[list[Annotated[str, BeforeValidator(_upper)]], BeforeValidator(_as_list),
                     Field(min_length=1)] | None = None
    job_name: Globs | None = None
    tags: Presence | None = None
    event_vars: Presence | None = None
    job_reason: Globs | None = None
    job_reason_regex: str | None = None
    task_name: Globs | None = None
    exit_code: Annotated[ExitCodes, BeforeValidator(_exit_codes)] | None = None
    instance_reason: Globs | None = None
    instance_reason_regex: str | None = None

    @field_validator("event")
    @classmethod
    def _known_events(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else _check_events(v)

    @field_validator("job_reason_regex", "instance_reason_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        return _check_regex(v)

    @property
    def needs_details(self) -> bool:
        """True if checking this rule may call DescribeJob / DescribeTask."""
        return self.job_reason is not None or self.job_reason_regex is not None or \
            self._needs_instances or self.task_name is not None

    @property
    def _needs_instances(self) -> bool:
        return self.exit_code is not None or self.instance_reason is not None or \
            self.instance_reason_regex is not None

    def first_failure(self, failure: Failure, rule: str) -> str | None:
        """None if every condition holds, else why the first one that fails does not hold. Raises
        DetailsMissing if a condition needs details and `failure.details` is None."""
        why = self.cheap_failure(failure)
        if why is not None or not self.needs_details:
            return why
        if failure.details is None:
            raise DetailsMissing(rule)
        return self._job_reason(failure.details) or self._instances(failure.details)

    def cheap_failure(self, failure: Failure) -> str | None:
        """Why the first condition answered without details does not hold, or None."""
        if self.event is not None:
            if failure.event_name is None:
                return f"event: none (found by the sweep, not a notice); rule wants {_shown(self.event)}"
            if failure.event_name not in self.event:
                return f"event: {failure.event_name} is not one of {_shown(self.event)}"
        if self.job_name is not None:
            name = failure.job.JobName
            if not name:
                return "job_name: the job has no name"
            if not _glob_any(name, self.job_name):
                return f"job_name: {_short(name)} matches none of {_shown(self.job_name)}"
        if self.tags is not None:
            why = _check_presence("tags", failure.job.Tags, self.tags)
            if why:
                return why
        if self.event_vars is not None:
            why = _check_presence("event_vars", failure.event_vars, self.event_vars)
            if why:
                return why
        return None

    def _job_reason(self, detail: JobDetail) -> str | None:
        texts = _texts(detail.StateReason, detail.StateDetailedReason)
        if self.job_reason is not None:
            if not texts:
                return "job_reason: the job has no StateReason or StateDetailedReason"
            if not any(_glob_any(t, self.job_reason) for t in texts):
                return f"job_reason: {_said(texts)} match none of {_shown(self.job_reason)}"
        if self.job_reason_regex is not None:
            if not texts:
                return "job_reason_regex: the job has no StateReason or StateDetailedReason"
            if not any(re.search(self.job_reason_regex, t) for t in texts):
                return f"job_reason_regex: {_said(texts)} do not match /{self.job_reason_regex}/"
        return None

    def _instances(self, detail: JobDetail) -> str | None:
        """Task and instance conditions must all hold for one failed instance of one failed task."""
        if self.task_name is None and not self._needs_instances:
            return None
        first = "task_name" if self.task_name is not None else next(
            n for n in ("exit_code", "instance_reason", "instance_reason_regex")
            if getattr(self, n) is not None)
        tasks = detail.failed_tasks
        if not tasks:
            return f"{first}: the job reports no failed tasks"
        if self.task_name is not None:
            names = [t.TaskName for t in tasks]
            tasks = [t for t in tasks if _glob_any(t.TaskName, self.task_name)]
            if not tasks:
                return f"task_name: failed tasks {_shown(names)} match none of {_shown(self.task_name)}"
        if not self._needs_instances:
            return None
        instances: list[TaskInstanceView] = [i for t in tasks for i in t.TaskInstanceSet if i.failed]
        if not instances:
            return f"{first}: no failed task instances reported for tasks {_shown(t.TaskName for t in tasks)}"
        if self.exit_code is not None:
            codes = [i.ExitCode for i in instances]
            instances = [i for i in instances if i.ExitCode is not None and self.exit_code.holds(i.ExitCode)]
            if not instances:
                return (f"exit_code: failed instances exited with {_shown(codes)}, "
                        f"none {self.exit_code}")
        if self.instance_reason is not None:
            patterns = self.instance_reason
            reasons = _instance_texts(instances)
            instances = [i for i in instances
                         if any(_glob_any(t, patterns) for t in _texts(i.StateReason, i.StateDetailedReason))]
            if not instances:
                return f"instance_reason: {_shown(reasons)} match none of {_shown(patterns)}"
        if self.instance_reason_regex is not None:
            rx = self.instance_reason_regex
            if not any(re.search(rx, t) for i in instances
                       for t in _texts(i.StateReason, i.StateDetailedReason)):
                return f"instance_reason_regex: {_shown(_instance_texts(instances))} do not match /{rx}/"
        return None

    def summary(self) -> str:
        parts: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, list):
                parts.append(f"{name} {_shown(value, 4)}")
            elif isinstance(value, dict):
                parts.append(f"{name} {{" + ", ".join(
                    f"{k}: {'present' if v is True else 'absent' if v is False else repr(v)}"
                    for k, v in value.items()) + "}")
            elif isinstance(value, ExitCodes):
                parts.append(f"exit_code {value}")
            else:
                parts.append(f"{name} /{value}/")
        return "; ".join(parts) or "always"


# ---- limits, rules, the file --------------------------------------------------------------------


class Backoff(_Strict):
    """delay = min(cap, initial · factor^n), n = retries already spent on the counter; with full
    jitter a uniform draw from [0, delay]. Counted from the failure's EndTime."""

    initial: Duration = 0.0
    factor: float = Field(default=2.0, ge=1.0, le=100.0)
    cap: Duration = 600.0
    jitter: Annotated[Literal["full", "none"], BeforeValidator(_lower)] = "full"

    def merged(self, override: Backoff | None) -> Backoff:
        """This backoff with the fields a rule set explicitly replaced."""
        if override is None:
            return self
        return self.model_copy(update={f: getattr(override, f) for f in override.model_fields_set})

    def summary(self) -> str:
        if self.initial == 0:
            return "none"
        return (f"{format_duration(self.initial)} x {self.factor:g}^n, cap {format_duration(self.cap)}"
                f", jitter {self.jitter}")


class FleetBudgetSpec(_Strict):
    """At most `max_retries` retries across the fleet in each `window` (fixed windows)."""

    max_retries: int = Field(ge=1, le=1_000_000)
    window: Duration = 600.0

    @field_validator("window")
    @classmethod
    def _window(cls, v: float) -> float:
        if not 1 <= v <= 86400:
            raise ValueError(f"expected from 1s to 24h, got {format_duration(v)}")
        return v


class Limits(_Strict):
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=0, le=1000)
    max_uncounted: int = Field(default=DEFAULT_MAX_UNCOUNTED, ge=0, le=1000)
    max_failure_age: Duration = DEFAULT_MAX_FAILURE_AGE_S
    backoff: Backoff = Field(default_factory=Backoff)
    fleet_budget: FleetBudgetSpec | None = None

    @field_validator("max_failure_age")
    @classmethod
    def _age(cls, v: float) -> float:
        if not 0 < v <= MAX_FAILURE_AGE_LIMIT_S:
            raise ValueError(f"expected more than 0s and at most 24h, got {format_duration(v)} (the "
                             "ledger remembers a failure for at least 25h; an older one could be "
                             "retried twice)")
        return v


class DefaultAction(_Strict):
    """What happens when no rule matches."""

    action: Annotated[Literal["SKIP", "RETRY"], BeforeValidator(_upper)] = "SKIP"
    reason: str = Field(default="no rule matched", min_length=1, max_length=300)


class Overrides(_Strict):
    """Where per-job overrides (`autoretry:disabled`, `autoretry:max-attempts`,
    `autoretry:policy-rule`) may come from."""

    tags: bool = True
    event_vars: bool = True


class Notify(_Strict):
    """Which give-up outcomes tell operators (the channels are configured by environment)."""

    outcomes: list[str] = Field(max_length=len(GIVE_UP_OUTCOMES))

    @field_validator("outcomes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        known = sorted(GIVE_UP_OUTCOMES)
        for word in v:
            if word not in GIVE_UP_OUTCOMES:
                raise ValueError(f"unknown outcome {word!r}; allowed: {', '.join(known)}")
        return v


@dataclass(frozen=True)
class RuleMatch:
    """Whether one rule matched one failure, and if not, the first condition that did not hold."""

    matched: bool
    why_not: str | None = None


def _named(pattern: str, help_text: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            raise ValueError(f"expected {help_text}, got {value!r}")
        return value
    return BeforeValidator(check)


RuleName = Annotated[str, _named(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}",
                                 "up to 64 letters, digits, '_', '.', ':' or '-', starting with a "
                                 "letter or digit")]
CounterName = Annotated[str, _named(r"[a-z][a-z0-9_-]{0,31}",
                                    "up to 32 lowercase letters, digits, '_' or '-', starting with a "
                                    "letter")]


class Rule(_Strict):
    name: RuleName
    when: When = Field(default_factory=When)
    action: ActionName
    reason: str | None = Field(default=None, min_length=1, max_length=300)
    max_attempts: int | None = Field(default=None, ge=0, le=1000)
    max_uncounted: int | None = Field(default=None, ge=0, le=1000)
    counter: CounterName | None = None
    backoff: Backoff | None = None

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> Rule:
        allowed = {"SKIP": set(), "RETRY": {"max_attempts", "backoff"},
                   "RETRY_UNCOUNTED": {"max_uncounted", "counter", "backoff"}}[self.action]
        for name in ("max_attempts", "max_uncounted", "counter", "backoff"):
            if getattr(self, name) is not None and name not in allowed:
                which = {"max_attempts": "RETRY", "max_uncounted": "RETRY_UNCOUNTED",
                         "counter": "RETRY_UNCOUNTED", "backoff": "RETRY or RETRY_UNCOUNTED"}[name]
                raise ValueError(f"{name}: only for action {which}; this rule's action is {self.action}")
        if self.counter == BUDGET:
            raise ValueError(f"counter: {BUDGET!r} is the job's own budget; RETRY_UNCOUNTED must not "
                             "spend it (use action RETRY instead)")
        return self

    @property
    def counter_name(self) -> str:
        return BUDGET if self.action == "RETRY" else (self.counter or UNCOUNTED)

    def matches(self, failure: Failure) -> RuleMatch:
        """Raises DetailsMissing if a condition needs details and `failure.details` is None."""
        why = self.when.first_failure(failure, self.name)
        return RuleMatch(why is None, why)


class PolicyFile(_Strict):
    version: Literal[1]
    default: DefaultAction = Field(default_factory=DefaultAction)
    limits: Limits = Field(default_factory=Limits)
    rules: list[Rule] = Field(default_factory=list, max_length=200)
    overrides: Overrides = Field(default_factory=Overrides)
    notify: Notify | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PolicyFile:
        problems: list[str] = []
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            where = f"rules[{i}] {rule.name!r}"
            if rule.name in RESERVED_RULE_NAMES:
                problems.append(f"{where}.name: {rule.name!r} is reserved for decisions no rule made; "
                                "choose another name")
            if rule.name in seen:
                problems.append(f"{where}.name: already used by rules[{seen[rule.name]}]; names must "
                                "be unique (they appear in every decision line)")
            seen.setdefault(rule.name, i)
            if rule.action != "SKIP":
                merged = self.limits.backoff.merged(rule.backoff)
                problems += self._backoff_problems(f"{where}.backoff", merged)
        problems += self._backoff_problems("limits.backoff", self.limits.backoff)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _backoff_problems(self, where: str, b: Backoff) -> list[str]:
        out = []
        if b.initial > b.cap:
            out.append(f"{where}.initial: {format_duration(b.initial)} is above the cap "
                       f"({format_duration(b.cap)})")
        if b.initial > 0 and b.cap >= self.limits.max_failure_age:
            out.append(f"{where}.cap: {format_duration(b.cap)} is not shorter than "
                       f"limits.max_failure_age ({format_duration(self.limits.max_failure_age)}); "
                       "a retry due that late would be skipped as too old")
        return out
