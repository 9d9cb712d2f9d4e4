"""Pydantic models of what arrives: Batch event notices and the topic's push envelope.

Only one sample body is published by Tencent (a compute-node event), so every field of `Batch`
except `JobId` is optional and unknown fields are kept. Nothing here is trusted for state: the
retrier re-reads every job through the API before it acts.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

# Every event name Batch documents (API enum `EventConfig.EventName`).
JOB_FAILURE_EVENTS = frozenset(
    {
        "JOB_FAILED",
        "JOB_FAILED_INTERRUPTED",
        "TASK_FAILED",
        "TASK_FAILED_INTERRUPTED",
        "TASK_INSTANCE_FAILED",
        "TASK_INSTANCE_FAILED_INTERRUPTED",
    }
)
OTHER_KNOWN_EVENTS = frozenset(
    {
        "JOB_RUNNING",
        "JOB_SUCCEED",
        "TASK_RUNNING",
        "TASK_SUCCEED",
        "TASK_INSTANCE_RUNNING",
        "TASK_INSTANCE_SUCCEED",
        "COMPUTE_ENV_CREATED",
        "COMPUTE_ENV_DELETED",
        "COMPUTE_NODE_CREATED",
        "COMPUTE_NODE_CREATION_FAILED",
        "COMPUTE_NODE_RUNNING",
        "COMPUTE_NODE_ABNORMAL",
        "COMPUTE_NODE_DELETING",
    }
)
KNOWN_EVENTS = JOB_FAILURE_EVENTS | OTHER_KNOWN_EVENTS

JOB_ID_PATTERN = r"^job-[0-9A-Za-z]{4,32}$"
REGION_PATTERN = r"^[a-z]{2,4}(-[a-z0-9]+){1,3}$"


class EventVar(BaseModel):
    """A custom key/value the job owner attached to the event (API `Name`/`Value`, CLI `name`/`value`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(validation_alias=AliasChoices("Name", "name"), max_length=256)
    value: str = Field(default="", validation_alias=AliasChoices("Value", "value"), max_length=4096)

    @field_validator("value", mode="before")
    @classmethod
    def _value_as_text(cls, v: Any) -> Any:
        return "" if v is None else (str(v) if isinstance(v, (int, float, bool)) else v)


class BatchFields(BaseModel):
    """The event-specific `Batch` object. For job, task and task-instance events it names the job."""

    model_config = ConfigDict(extra="allow")

    JobId: str | None = Field(default=None, pattern=JOB_ID_PATTERN)
    JobName: str | None = Field(default=None, max_length=256)
    JobState: str | None = Field(default=None, max_length=64)
    StateReason: str | None = Field(default=None, max_length=4096)
    EndTime: str | None = Field(default=None, max_length=64)
    TaskName: str | None = Field(default=None, max_length=256)


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    EventName: str = Field(max_length=64)
    EventVersion: str | None = Field(default=None, max_length=16)
    EventTime: str | None = Field(default=None, max_length=64)
    Region: str | None = Field(default=None, pattern=REGION_PATTERN)
    Batch: BatchFields = Field(default_factory=BatchFields)
    EventVars: list[EventVar] = Field(default_factory=list, max_length=64)

    @field_validator("EventVars", mode="before")
    @classmethod
    def _null_vars_are_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    @property
    def is_job_failure(self) -> bool:
        return self.EventName in JOB_FAILURE_EVENTS

    @property
    def vars(self) -> dict[str, str]:
        return {var.name: var.value for var in self.EventVars}


class Notice(BaseModel):
    """The message Batch publishes: `{"Events": [...]}`."""

    model_config = ConfigDict(extra="allow")

    Events: list[Event] = Field(min_length=1, max_length=100)


class PushEnvelope(BaseModel):
    """The TDMQ-CMQ HTTP subscription's JSON format; the notice is the string `msgBody`."""

    model_config = ConfigDict(extra="allow")

    msgBody: str
    msgId: str | None = Field(default=None, max_length=128)
    topicName: str | None = Field(default=None, max_length=256)
    subscriptionName: str | None = Field(default=None, max_length=256)
    TopicOwner: int | str | None = None
    publishTime: int | str | None = None
