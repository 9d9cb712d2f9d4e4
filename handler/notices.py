"""What arrives: Batch event notices and the topic's push envelope, read by hand.

Tencent publishes one sample body (a compute-node event); the body of a job or task failure notice
is not documented. So the reading is tolerant: the job id is taken wherever it stands
(`Batch.JobId`, the event's own `JobId`, a task's fields), `EventVars` may be a list of Name/Value or
Key/Value pairs or an object, times may be strings or numbers, any `EventVersion` and unknown fields
anywhere are kept. It is strict only where being wrong costs something: a job id must have the
Batch API's exact format, a region must look like one, and a notice carries at most
`MAX_EVENTS_PER_NOTICE` events. Nothing here is trusted for state: the retrier re-reads every job
through the API before it acts.

Hand-written rather than pydantic models: the same checks, without ~90 ms of model building on a
cold start.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

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

# The Batch API's job ids are `job-` and 8 lowercase letters or digits (`job-97zcl3wt`,
# `job-7e7evk2x` in Tencent's API reference); anything else is refused by DescribeJobs as
# InvalidParameter.JobIdMalformed, for the whole batch it rides in.
JOB_ID_PATTERN = r"^job-[0-9a-z]{8}$"
REGION_PATTERN = r"^[a-z]{2,4}(-[a-z0-9]+){1,3}$"
# A real notice carries one event. 100 distinct jobs fit one DescribeJobs call, so a notice can
# cost at most one call of the shared budget before the policy has its say.
MAX_EVENTS_PER_NOTICE = 100
MAX_EVENT_VARS = 64
MAX_VAR_NAME = 256
MAX_VAR_VALUE = 4096
MAX_TEXT = 4096  # any other string field we read

_JOB_ID = re.compile(JOB_ID_PATTERN)
_REGION = re.compile(REGION_PATTERN)
# Where a task or task-instance event may keep its job's id, searched in this order after
# `Batch.JobId` and the event's own `JobId`.
_NESTED_JOB_HOLDERS = ("Job", "Task", "TaskInstance", "TaskInstanceView", "TaskView", "Detail")


class NoticeError(ValueError):
    """A body that is not a notice we can act on; the message says what is wrong, where."""


@dataclass(frozen=True)
class BatchFields:
    """The event's `Batch` object: the job it names (wherever the id stood) and everything else as
    it came."""

    JobId: str | None = None
    JobName: str | None = None
    TaskName: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    EventName: str
    Region: str | None
    Batch: BatchFields
    vars: dict[str, str]

    @property
    def is_job_failure(self) -> bool:
        return self.EventName in JOB_FAILURE_EVENTS

    @property
    def is_known(self) -> bool:
        return self.EventName in KNOWN_EVENTS


@dataclass(frozen=True)
class Notice:
    """The message Batch publishes: `{"Events": [...]}`. `raw` is the body as parsed JSON."""

    Events: list[Event]
    raw: dict[str, Any]


@dataclass(frozen=True)
class PushEnvelope:
    """The TDMQ-CMQ HTTP subscription's JSON format; the notice is the string `msgBody`."""

    msgBody: str
    msgId: str | None


def _text(value: Any, where: str, limit: int = MAX_TEXT) -> str | None:
    """A scalar as text (numbers and booleans too: a time may come as epoch seconds)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, (int, float)):
        value = format(value, "g") if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        raise NoticeError(f"{where}: expected text, got {_kind(value)}")
    if len(value) > limit:
        raise NoticeError(f"{where}: longer than {limit} characters")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def parse_envelope(data: dict[str, Any]) -> PushEnvelope:
    body = data.get("msgBody")
    if not isinstance(body, str):
        raise NoticeError(f"push envelope: msgBody must be text, got {_kind(body)}")
    msg_id = data.get("msgId")
    if isinstance(msg_id, (dict, list)):
        msg_id = None
    return PushEnvelope(body, _text(msg_id, "push envelope: msgId", 128) if msg_id is not None else None)


def parse_notice(data: dict[str, Any]) -> Notice:
    """The notice in a parsed JSON body. Raises `NoticeError` naming the first thing wrong."""
    events = data.get("Events")
    if isinstance(events, dict):  # one event not wrapped in a list
        events = [events]
    if not isinstance(events, list):
        raise NoticeError("not a Batch notice: no Events")
    if not events:
        raise NoticeError("Events: empty; a notice carries at least one event")
    if len(events) > MAX_EVENTS_PER_NOTICE:
        raise NoticeError(f"Events: {len(events)} events; a notice may carry at most "
                          f"{MAX_EVENTS_PER_NOTICE}")
    return Notice([_event(ev, f"Events[{i}]") for i, ev in enumerate(events)], data)


def _event(raw: Any, where: str) -> Event:
    if not isinstance(raw, dict):
        raise NoticeError(f"{where}: expected an object, got {_kind(raw)}")
    name = raw.get("EventName")
    if not isinstance(name, str) or not name.strip():
        raise NoticeError(f"{where}.EventName: required, as text")
    name = name.strip()
    if len(name) > 64:
        raise NoticeError(f"{where}.EventName: longer than 64 characters")
    acted_on = name in JOB_FAILURE_EVENTS
    region = raw.get("Region")
    if region is not None and region != "" and not (isinstance(region, str)
                                                    and _REGION.match(region)):
        if acted_on:
            shown = region[:64] if isinstance(region, str) else _kind(region)
            raise NoticeError(f"{where}.Region: {shown!r} is not a region such as ap-guangzhou")
        region = None  # an event we do not act on is only counted: its oddities cost nothing
    batch = raw.get("Batch")
    if not isinstance(batch, dict):
        if acted_on and batch is not None:
            raise NoticeError(f"{where}.Batch: expected an object, got {_kind(batch)}")
        batch = {}
    path, job_id = _job_id(raw, batch, where)
    if job_id is not None and not (isinstance(job_id, str) and _JOB_ID.match(job_id)):
        if acted_on:
            shown = job_id[:40] if isinstance(job_id, str) else _kind(job_id)
            raise NoticeError(f"{path}: {shown!r} is not a Batch job id (job- and 8 lowercase "
                              "letters or digits)")
        job_id = None
    if acted_on and job_id is None:
        raise NoticeError(f"{where}.Batch.JobId is required for {name}")
    known = {"JobId", "JobName", "TaskName"}
    fields = BatchFields(
        JobId=job_id,
        JobName=_loose_text(batch.get("JobName")),
        TaskName=_loose_text(batch.get("TaskName")),
        extra={k: v for k, v in batch.items() if k not in known},
    )
    try:
        event_vars = _event_vars(raw.get("EventVars"), f"{where}.EventVars")
    except NoticeError:
        if acted_on:
            raise
        event_vars = {}
    return Event(name, region if isinstance(region, str) and region else None, fields, event_vars)


def _loose_text(value: Any) -> str | None:
    # Names are shown, never acted on: a wrong type is dropped rather than refused.
    return value[:256] if isinstance(value, str) and value else None


def _job_id(event: dict[str, Any], batch: dict[str, Any], where: str) -> tuple[str, Any]:
    """Where the event names its job, and the value found there (not yet checked)."""
    candidates: list[tuple[str, Any]] = [(f"{where}.Batch.JobId", batch.get("JobId")),
                                         (f"{where}.JobId", event.get("JobId"))]
    for holder in _NESTED_JOB_HOLDERS:
        nested = batch.get(holder)
        if isinstance(nested, list) and nested:
            nested = nested[0]
        if isinstance(nested, dict):
            candidates.append((f"{where}.Batch.{holder}.JobId", nested.get("JobId")))
    for path, value in candidates:
        if value is not None and value != "":
            return path, value
    return f"{where}.Batch.JobId", None


def _event_vars(raw: Any, where: str) -> dict[str, str]:
    """Name/Value or Key/Value pairs (any case), or an object of names to values."""
    if raw is None or raw == "":
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise NoticeError(f"{where}[{i}]: expected an object with Name and Value")
            lowered = {str(k).lower(): v for k, v in item.items()}
            name = lowered.get("name", lowered.get("key"))
            if name is None:
                raise NoticeError(f"{where}[{i}]: no Name (or Key)")
            pairs.append((name, lowered.get("value")))
    else:
        raise NoticeError(f"{where}: expected a list of Name/Value pairs or an object")
    if len(pairs) > MAX_EVENT_VARS:
        raise NoticeError(f"{where}: more than {MAX_EVENT_VARS} variables")
    out: dict[str, str] = {}
    for name, value in pairs:
        key = _text(name, f"{where} name", MAX_VAR_NAME)
        if key is None:
            raise NoticeError(f"{where}: a variable without a name")
        if isinstance(value, (dict, list)):
            raise NoticeError(f"{where}[{key[:40]!r}]: expected a scalar value")
        out[key] = _text(value, f"{where}[{key[:40]!r}]", MAX_VAR_VALUE) or ""
    return out


# --- shapes ----------------------------------------------------------------------------------------

# The documented body (compute-node sample) and what this project's job-failure samples carry. A
# notice with anything else is a shape worth showing to whoever maintains the reading above.
_DOCUMENTED_BATCH = {"JobId", "JobName", "JobState", "StateReason", "EndTime", "TaskName",
                     "TaskInstanceIndex", "ComputeEnvId", "ComputeNodeId", "ComputeNodeInstanceId",
                     "ComputeNodeState", "ComputeNodeMetadata"}
_DOCUMENTED: frozenset[str] = frozenset(
    {":dict", "Events:list", "Events[]:dict", "Events[].EventVersion:str", "Events[].EventTime:str",
     "Events[].Region:str", "Events[].EventName:str", "Events[].Batch:dict",
     "Events[].EventVars:list", "Events[].EventVars:null", "Events[].EventVars[]:dict",
     "Events[].EventVars[].Name:str", "Events[].EventVars[].Value:str"}
    | {f"Events[].Batch.{k}:{t}" for k in _DOCUMENTED_BATCH for t in ("str", "int", "null")}
)
SAMPLE_CHARS = 2000


def _type(value: Any) -> str:
    return {dict: "dict", list: "list", str: "str", bool: "bool", int: "int", float: "float",
            type(None): "null"}.get(type(value), "other")


def _paths(value: Any, path: str, out: set[str], depth: int = 0) -> None:
    out.add(f"{path}:{_type(value)}")
    if depth >= 6 or len(out) > 200:
        return
    if isinstance(value, dict):
        for k, v in list(value.items())[:50]:
            _paths(v, f"{path}.{str(k)[:64]}" if path else str(k)[:64], out, depth + 1)
    elif isinstance(value, list):
        for v in value[:5]:
            _paths(v, f"{path}[]", out, depth + 1)


def _redacted(value: Any, depth: int = 0, key: str = "") -> Any:
    """The structure with every value replaced by its type; event names are kept (an operator
    needs them and they carry nothing of the job)."""
    if isinstance(value, dict):
        if depth >= 6:
            return "dict"
        return {str(k)[:64]: _redacted(v, depth + 1, str(k)) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_redacted(v, depth + 1) for v in value[:3]] + (["..."] if len(value) > 3 else [])
    if key == "EventName" and isinstance(value, str):
        return value[:64]
    return _type(value)


def new_shape(notice: Notice) -> str | None:
    """For a notice unlike the documented body: a short fingerprint of its shape; None for a
    documented one."""
    paths: set[str] = set()
    _paths(notice.raw, "", paths)
    unknown_names = sorted({ev.EventName[:64] for ev in notice.Events if not ev.is_known})
    if paths <= _DOCUMENTED and not unknown_names:
        return None
    return hashlib.sha256(
        json.dumps([sorted(paths), unknown_names]).encode("utf-8", "surrogatepass")
    ).hexdigest()[:16]


def redacted_sample(notice: Notice) -> str:
    """The notice's structure with every value replaced by its type, for an operator to send us."""
    return json.dumps(_redacted(notice.raw), separators=(",", ":"), ensure_ascii=True)[:SAMPLE_CHARS]
