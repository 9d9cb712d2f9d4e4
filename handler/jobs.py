"""What the function knows about a job: its reference, the API's view of it, and a failure's key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

FAILED = "FAILED"


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
        return {str(t.get("Key")): str(t.get("Value", "")) for t in value if isinstance(t, dict)}
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

    def failure_key(self, region: str) -> FailureKey | None:
        if self.JobState != FAILED or not self.EndTime:
            return None
        return FailureKey(region, self.JobId, self.EndTime)


class TaskInstanceView(BaseModel):
    model_config = ConfigDict(extra="allow")

    TaskInstanceIndex: int = 0
    TaskInstanceState: str | None = None
    ExitCode: int | None = None
    StateReason: str | None = None


class TaskView(BaseModel):
    model_config = ConfigDict(extra="allow")

    TaskName: str
    TaskState: str | None = None
    TaskInstanceSet: list[TaskInstanceView] = Field(default_factory=list)


class JobDetail(BaseModel):
    """What `DescribeJob` (+ `DescribeTask` for failed tasks) adds: reasons and exit codes."""

    model_config = ConfigDict(extra="allow")

    JobId: str
    StateReason: str | None = None
    Tags: dict[str, str] = Field(default_factory=dict)
    TaskSet: list[TaskView] = Field(default_factory=list)

    _tags = field_validator("Tags", mode="before")(_tags_as_dict)

    @property
    def failed_tasks(self) -> list[TaskView]:
        return [t for t in self.TaskSet if t.TaskState in ("FAILED", "FAILED_INTERRUPTED")]
