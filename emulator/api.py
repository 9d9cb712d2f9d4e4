"""The Batch API 3.0 actions the emulator answers, with the service's own error codes and limits."""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.behaviour import Behaviour
from emulator.fleet import Fleet, Job, Outcome

VERSION = "2017-03-12"
JOB_ID = re.compile(r"^job-[0-9a-z]{8}$")
MAX_IDS = 100
TASK_PAGE, MAX_TASK_PAGE = 100, 1000  # DescribeTask's Limit: default 100, at most 1000 (SDK model)

# Requests per second per action for the account (the lowest of Tencent's documented figures).
LIMITS: dict[str, float] = {"RetryJobs": 2, "DescribeJobs": 2, "DescribeJob": 2, "DescribeTask": 3,
                            "TerminateJob": 2, "SubmitJob": 5}


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class Service:
    """One API the server answers, chosen by X-TC-Version; `name` is the service its signature names."""

    name: str
    handle: Callable[[str, dict[str, Any]], dict[str, Any]]


class RateLimiter:
    """Requests of each action counted as they arrive, within its limit per (scaled) second under
    the reading `behaviour.rate_limit` names (emulator.behaviour.RATE_LIMITS): `window`, at most
    `limit` in any window of one second; `bucket`, one token refilled every 1/limit seconds."""

    def __init__(self, limits: dict[str, float], speedup: float = 1.0,
                 behaviour: Behaviour | None = None) -> None:
        self.limits, self.window = limits, 1.0 / speedup
        self.behaviour = behaviour or Behaviour()
        self._seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def allow(self, action: str, now: float | None = None) -> bool:
        limit = self.limits.get(action)
        if limit is None:
            return True
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen[action]
            if self.behaviour.rate_limit == "bucket":
                if seen and now < seen[-1] + self.window / limit:
                    return False
                seen.clear()  # the bucket needs only the last arrival
            else:
                while seen and seen[0] <= now - self.window:
                    seen.popleft()
                if len(seen) >= limit:
                    return False
            seen.append(now)
            return True


def _ids(params: dict[str, Any], key: str = "JobIds") -> list[str]:
    ids = params.get(key)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError("InvalidParameter", f"{key} must be a list of strings")
    if len(ids) > MAX_IDS:
        raise ApiError("InvalidParameterValue.LimitExceeded", f"{key} takes at most {MAX_IDS} ids")
    return ids


def _page(params: dict[str, Any], default: int = 20, most: int = MAX_IDS) -> tuple[int, int]:
    offset, limit = params.get("Offset", 0), params.get("Limit", default)
    if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or limit < 0:
        raise ApiError("InvalidParameter", "Offset and Limit must be non-negative integers")
    if limit > most:
        raise ApiError("InvalidParameterValue.LimitExceeded", f"Limit is at most {most}")
    return offset, limit


Action = Callable[[dict[str, Any]], dict[str, Any]]


def answer_by_method(service: object, name: str, action: str, params: dict[str, Any],
                     lock: threading.Lock | threading.RLock) -> dict[str, Any]:
    """A management API whose actions are the `_api_<Action>` methods of `service` (CAM, SCF,
    TDMQ), answered one at a time under `lock`; any other action is InvalidAction."""
    method = getattr(service, f"_api_{action}", None)
    if method is None:
        raise ApiError("InvalidAction", f"the emulator does not answer {name} {action}")
    with lock:
        result: dict[str, Any] = method(params)
        return result


class Actions:
    """An API over the fleet that answers from a table of actions, one call at a time under the
    fleet's lock."""

    def __init__(self, fleet: Fleet, actions: dict[str, Action]) -> None:
        self.fleet, self.actions = fleet, actions

    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action not in self.actions:
            raise ApiError("InvalidAction", f"the action {action!r} does not exist")
        with self.fleet.lock:
            return self.actions[action](params)


class Api(Actions):
    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet, {
            "SubmitJob": self.submit_job, "DescribeJob": self.describe_job,
            "DescribeJobs": self.describe_jobs, "DescribeTask": self.describe_task,
            "RetryJobs": self.retry_jobs, "TerminateJob": self.terminate_job,
        })

    def _job(self, job_id: object) -> Job:
        if not isinstance(job_id, str) or not job_id:
            raise ApiError("MissingParameter", "JobId is required")
        if not JOB_ID.match(job_id):
            raise ApiError("InvalidParameter.JobIdMalformed", f"the JobId {job_id!r} is malformed")
        job = self.fleet.jobs.get(job_id)
        if job is None:
            raise ApiError("ResourceNotFound.Job", f"the job {job_id} does not exist")
        return job

    # --- actions ---------------------------------------------------------------------------------
    def submit_job(self, params: dict[str, Any]) -> dict[str, Any]:
        spec = params.get("Job")
        if not isinstance(spec, dict) or not isinstance(spec.get("JobName"), str):
            raise ApiError("InvalidParameter", "Job.JobName is required")
        topic, notify, event_vars = None, set(), {}
        for note in spec.get("Notifications") or []:
            topic = note.get("TopicName")
            for config in note.get("EventConfigs") or []:
                notify.add(config.get("EventName"))
                event_vars.update({v["Name"]: v["Value"] for v in config.get("EventVars") or []})
        tags = {t["Key"]: t["Value"] for t in spec.get("Tags") or []}
        # The emulator's own knob: tag `emulator:fail` = "<reason>|<exit code>" makes every run fail.
        script = [Outcome.succeed()]
        if "emulator:fail" in tags:
            reason, _, code = tags["emulator:fail"].partition("|")
            script = [Outcome.fail(reason, int(code) if code else None)]
        job = self.fleet.add(spec["JobName"], script, topic=topic, notify=notify, event_vars=event_vars,
                             tags=tags)
        return {"JobId": job.job_id}

    def describe_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._job(params.get("JobId")).detail()

    def describe_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        if "JobIds" in params and "Filters" in params:
            raise ApiError("InvalidParameter", "JobIds and Filters cannot be used together")
        offset, limit = _page(params)
        if "JobIds" in params:
            ids = _ids(params)
            for job_id in ids:
                if not JOB_ID.match(job_id):
                    raise ApiError("InvalidParameter.JobIdMalformed", f"the JobId {job_id!r} is malformed")
            jobs = [self.fleet.jobs[i] for i in dict.fromkeys(ids) if i in self.fleet.jobs]
            return {"JobSet": [j.view() for j in jobs[offset:offset + limit]], "TotalCount": len(jobs)}
        filters = params.get("Filters") or []
        if not isinstance(filters, list):
            raise ApiError("InvalidFilter", "Filters must be a list")
        checked = [self._check_filter(f) for f in filters]
        order = self.fleet.behaviour.listing_order
        index = self.fleet.index
        states = self._states(checked)
        rest = [(name, values) for name, values in checked if name != "job-state"]
        if not rest:
            # The common sweep: one page of one state, straight from the sorted index.
            seqs = index.page(states, order, offset, limit)
            return {"JobSet": [self.fleet.by_seq[s].view() for s in seqs], "TotalCount": index.count(states)}
        jobs = [self.fleet.by_seq[s] for s in index.ordered(states, order)]
        for name, values in rest:
            jobs = self._filter(jobs, name, values)
        return {"JobSet": [j.view() for j in jobs[offset:offset + limit]], "TotalCount": len(jobs)}

    def _states(self, checked: list[tuple[str, set[Any]]]) -> set[str]:
        states = set(self.fleet.index.all_states())
        for name, values in checked:
            if name == "job-state":
                states &= {v for v in values if isinstance(v, str)}
        return states

    @staticmethod
    def _check_filter(flt: Any) -> tuple[str, set[Any]]:
        if not isinstance(flt, dict) or not isinstance(flt.get("Values"), list):
            raise ApiError("InvalidFilter", "a filter needs Name and Values")
        name, values = flt.get("Name"), set(flt["Values"])
        if len(values) > 5:
            raise ApiError("InvalidParameterValue.LimitExceeded", "a filter takes at most 5 values")
        if name in ("job-state", "job-name", "job-id") or (isinstance(name, str) and name.startswith("tag:")):
            return name, values
        raise ApiError("InvalidParameterValue.InvalidFilter", f"unknown filter {name!r}")

    @staticmethod
    def _filter(jobs: list[Job], name: str, values: set[Any]) -> list[Job]:
        if name == "job-name":
            return [j for j in jobs if j.name in values]
        if name == "job-id":
            return [j for j in jobs if j.job_id in values]
        return [j for j in jobs if j.tags.get(name[4:]) in values]

    def describe_task(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(params.get("JobId"))
        if params.get("TaskName") != "main":
            raise ApiError("ResourceNotFound.Task", f"the task {params.get('TaskName')!r} does not exist")
        offset, limit = _page(params, default=TASK_PAGE, most=MAX_TASK_PAGE)
        states: set[str] | None = None
        for flt in params.get("Filters") or []:
            if not isinstance(flt, dict) or flt.get("Name") != "task-instance-state" \
                    or not isinstance(flt.get("Values"), list):
                raise ApiError("InvalidParameterValue.InvalidFilter",
                               "the only filter is task-instance-state")
            states = set(flt["Values"]) if states is None else states & set(flt["Values"])
        return job.task_detail(offset, limit, self.fleet.behaviour.lost_exit_code, states)

    def retry_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        ids = _ids(params)
        if not ids:
            raise ApiError("MissingParameter", "JobIds is required")
        jobs = list({j.job_id: j for j in (self._job(i) for i in ids)}.values())  # every id exists
        refused = next((j for j in jobs if j.state != "FAILED"), None)
        if refused is not None:
            if self.fleet.behaviour.retry_refusal == "apply-some-then-refuse":
                for job in jobs:
                    if job.state == "FAILED":
                        self.fleet.retry(job)
            raise ApiError("UnsupportedOperation",
                           f"the job {refused.job_id} is {refused.state}; only FAILED jobs can be retried")
        for job in jobs:
            self.fleet.retry(job)
        return {}

    def terminate_job(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(params.get("JobId"))
        if job.state == "SUBMITTED":
            raise ApiError("UnsupportedOperation", "a SUBMITTED job cannot be terminated")
        self.fleet.terminate(job)
        return {}
