"""What the function knows about a job: its reference, the API's view of it, and a failure's key."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

FAILED = "FAILED"  # the one job state RetryJobs accepts
# Task and task-instance states that mean "this part failed" (FAILED_INTERRUPTED keeps the instance).
FAILED_STATES = frozenset({"FAILED", "FAILED_INTERRUPTED"})

_EPOCH_NUMBER = re.compile(r"^\d{9,11}(?:\.\d+)?$")


def iso_epoch(text: str) -> float:
    """Epoch seconds of an API time (`2026-05-01T10:30:00Z`; any ISO 8601 form, or epoch seconds).
    A time without a zone is UTC, as the API writes them. Raises ValueError naming the text."""
    s = str(text).strip()
    if _EPOCH_NUMBER.match(s):
        return float(s)
    try:
        parsed = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {s[:40]!r} (expected ISO 8601 such as "
                         "2026-05-01T10:30:00Z)") from None
    if parsed.tzinfo is None:
        # Read as local time, a naive time would move the failure's age by the host's offset.
        parsed = parsed.replace(tzinfo=timezone.utc)  # noqa: UP017 (SCF runs Python 3.10: no datetime.UTC)
    return parsed.timestamp()


def _epoch_or_none(text: str | None) -> float | None:
    if not text or not str(text).strip():
        return None
    try:
        value = iso_epoch(text)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True, order=True)
class JobRef:
    region: str
    job_id: str

    def __str__(self) -> str:
        return f"{self.region}/{self.job_id}"


@dataclass(frozen=True, order=True)
class FailureKey:
    """One failure of one job. The same failure seen by any notice, redelivery or sweep has the same
    key; a job that fails again after a retry has a new EndTime and so a new key."""

    region: str
    job_id: str
    end_time: str

    def __str__(self) -> str:
        return f"{self.region}/{self.job_id}/{self.end_time}"

    @property
    def job(self) -> JobRef:
        return JobRef(self.region, self.job_id)

    @classmethod
    def parse(cls, text: str) -> FailureKey:
        region, job_id, end_time = text.split("/", 2)
        return cls(region, job_id, end_time)


def _tags_as_dict(value: Any) -> Any:
    # The API returns Tags as [{"Key", "Value"}] (or null); rules want a mapping.
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(t.get("Key")): "" if t.get("Value") is None else str(t.get("Value"))
                for t in value if isinstance(t, dict)}
    return value


def _time_text(value: Any) -> Any:
    # The API writes times as text; a number (epoch seconds) is kept as its text, not refused, so
    # one odd field cannot fail the whole DescribeJobs batch it arrives in.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class JobView(BaseModel):
    """A job as `DescribeJobs` reports it: the truth the retrier acts on."""

    model_config = ConfigDict(extra="allow")

    JobId: str
    JobName: str | None = None
    JobState: str
    EndTime: str | None = None
    CreateTime: str | None = None
    Tags: dict[str, str] = Field(default_factory=dict)

    _tags = field_validator("Tags", mode="before")(_tags_as_dict)
    _times = field_validator("EndTime", "CreateTime", mode="before")(_time_text)

    @property
    def end_epoch(self) -> float | None:
        """EndTime in epoch seconds; None when it is missing, empty or not a time."""
        return _epoch_or_none(self.EndTime)

    @property
    def bad_end_time(self) -> bool:
        """FAILED, but its EndTime is missing, empty or not a time: the failure cannot be keyed,
        so it is never claimed (the retrier skips it with reason `bad_end_time`)."""
        return self.JobState == FAILED and self.end_epoch is None

    def failure_key(self, region: str) -> FailureKey | None:
        """The key of the job's current failure; None unless FAILED with a usable EndTime. Never
        raises."""
        if self.JobState != FAILED or self.end_epoch is None:
            return None
        assert self.EndTime is not None
        return FailureKey(region, self.JobId, self.EndTime)


def _exit_code(value: Any) -> Any:
    # An integer in the API; text such as "137" is read as one, anything else as no code at all
    # rather than refusing the whole DescribeTask answer.
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,10}\s*", value):
        return int(value)
    return None


class TaskInstanceView(BaseModel):
    model_config = ConfigDict(extra="allow")

    TaskInstanceIndex: int = 0
    TaskInstanceState: str | None = None
    ExitCode: int | None = None
    StateReason: str | None = None
    StateDetailedReason: str | None = None

    _code = field_validator("ExitCode", mode="before")(_exit_code)

    @property
    def failed(self) -> bool:
        # An instance listed without a state is taken as failed: it came from a failed task.
        return self.TaskInstanceState is None or self.TaskInstanceState in FAILED_STATES


class TaskView(BaseModel):
    model_config = ConfigDict(extra="allow")

    TaskName: str
    TaskState: str | None = None
    TaskInstanceTotalCount: int | None = None
    TaskInstanceSet: list[TaskInstanceView] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.TaskState in FAILED_STATES


class JobDetail(BaseModel):
    """What `DescribeJob` (+ `DescribeTask` for failed tasks) adds: reasons and exit codes.

    `StateDetailedReason` is documented for task instances only (SDK 3.1 `TaskInstanceView`); the
    job-level one is read if the service sends it, so a rule on the job's reason sees either text."""

    model_config = ConfigDict(extra="allow")

    JobId: str
    StateReason: str | None = None
    StateDetailedReason: str | None = None
    Tags: dict[str, str] = Field(default_factory=dict)
    TaskSet: list[TaskView] = Field(default_factory=list)

    _tags = field_validator("Tags", mode="before")(_tags_as_dict)

    @property
    def failed_tasks(self) -> list[TaskView]:
        return [t for t in self.TaskSet if t.failed]
