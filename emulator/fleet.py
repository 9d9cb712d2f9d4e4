"""The emulated fleet: jobs whose runs follow a script, each run ending in success or a failure with
a reason and an exit code. Time is scaled by `speedup`; every failure gets an EndTime at least one
second after the previous one, as on the real service, so each failure has its own key."""

from __future__ import annotations

import heapq
import itertools
import random
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FINAL_STATES = frozenset({"SUCCEED", "FAILED", "FAILED_INTERRUPTED"})
TASK_NAME = "main"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Outcome:
    """How one run of a job ends."""

    succeeded: bool
    reason: str = ""
    exit_code: int | None = None
    interrupted: bool = False

    @classmethod
    def succeed(cls) -> Outcome:
        return cls(True)

    @classmethod
    def fail(cls, reason: str = "task failed", exit_code: int | None = 1,
             interrupted: bool = False) -> Outcome:
        return cls(False, reason, exit_code, interrupted)

    @property
    def state(self) -> str:
        if self.succeeded:
            return "SUCCEED"
        return "FAILED_INTERRUPTED" if self.interrupted else "FAILED"


@dataclass
class Job:
    job_id: str
    name: str
    script: list[Outcome]
    created: float
    topic: str | None = None
    notify: frozenset[str] = frozenset()
    event_vars: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "SUBMITTED"
    runs: int = 0
    retries: int = 0
    end_time: float | None = None
    last: Outcome | None = None
    started: float | None = None

    def next_outcome(self) -> Outcome:
        # The script's last entry repeats once it runs out.
        if not self.script:
            return Outcome.succeed()
        return self.script[min(self.runs - 1, len(self.script) - 1)]

    def snapshot(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "name": self.name, "state": self.state, "runs": self.runs,
                "retries": self.retries, "end_time": iso(self.end_time) if self.end_time else None,
                "reason": self.last.reason if self.last else "",
                "exit_code": self.last.exit_code if self.last else None}

    # --- the API's views -------------------------------------------------------------------------
    def _times(self) -> dict[str, Any]:
        return {"CreateTime": iso(self.created), "EndTime": iso(self.end_time) if self.end_time else None}

    def _tags(self) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in self.tags.items()]

    def _metrics(self) -> dict[str, int]:
        names = ("Submitted", "Pending", "Runnable", "Starting", "Running", "Succeed",
                 "FailedInterrupted", "Failed")
        counts = dict.fromkeys((f"{n}Count" for n in names), 0)
        key = "".join(p.capitalize() for p in self.state.split("_")) + "Count"
        counts[key] = 1
        return counts

    def view(self) -> dict[str, Any]:
        return {"JobId": self.job_id, "JobName": self.name, "JobState": self.state, "Priority": 0,
                "Placement": {"Zone": "ap-guangzhou-3"}, **self._times(), "TaskMetrics": self._metrics(),
                "Tags": self._tags()}

    def task_view(self) -> dict[str, Any]:
        state = "RUNNING" if self.state in ("SUBMITTED", "RUNNING") else self.state
        return {"TaskName": TASK_NAME, "TaskState": state, **self._times()}

    def detail(self) -> dict[str, Any]:
        return {"JobId": self.job_id, "JobName": self.name, "Zone": "ap-guangzhou-3", "Priority": 0,
                "JobState": self.state, **self._times(), "TaskSet": [self.task_view()],
                "DependenceSet": [], "TaskMetrics": self._metrics(), "TaskInstanceMetrics": self._metrics(),
                "StateReason": self.last.reason if self.last and not self.last.succeeded else "",
                "Tags": self._tags(), "NextAction": ""}

    def task_detail(self) -> dict[str, Any]:
        view = self.task_view()
        instance = {"TaskInstanceIndex": 0, "TaskInstanceState": view["TaskState"],
                    "ExitCode": self.last.exit_code if self.last else None,
                    "StateReason": self.last.reason if self.last else "",
                    "StateDetailedReason": "", "ComputeNodeInstanceId": "",
                    "CreateTime": view["CreateTime"], "LaunchTime": iso(self.started or self.created),
                    "RunningTime": iso(self.started or self.created), "EndTime": view["EndTime"],
                    "RedirectInfo": None}
        return {"JobId": self.job_id, **view, "TaskInstanceTotalCount": 1,
                "TaskInstanceSet": [instance], "TaskInstanceMetrics": self._metrics()}


class Fleet:
    """The jobs, and a clock thread that ends each run when its time comes."""

    def __init__(self, speedup: float = 1.0, run_s: float = 2.0, seed: int | None = None,
                 on_change: Callable[[Job, str], None] | None = None) -> None:
        self.speedup, self.run_s = speedup, run_s
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self._rng = random.Random(seed)
        self._timers: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self.lock)
        self._stopped = False
        self._last_end = 0.0
        self.on_change = on_change or (lambda job, event: None)
        self._thread = threading.Thread(target=self._run, name="emulator-fleet", daemon=True)
        self._thread.start()

    def new_id(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        while True:
            job_id = "job-" + "".join(self._rng.choice(alphabet) for _ in range(8))
            if job_id not in self.jobs:
                return job_id

    def add(self, name: str, script: Iterable[Outcome], *, topic: str | None = None,
            notify: Iterable[str] = (), event_vars: dict[str, str] | None = None,
            tags: dict[str, str] | None = None, failed_with: Outcome | None = None) -> Job:
        """A new job. Running at once, or (with `failed_with`) already FAILED from a first run."""
        with self.lock:
            job = Job(self.new_id(), name, list(script), time.time(), topic, frozenset(notify),
                      dict(event_vars or {}), dict(tags or {}))
            self.jobs[job.job_id] = job
            if failed_with is None:
                self._start(job)
            else:
                job.runs = 1
                self._end(job, failed_with)
            return job

    def _start(self, job: Job) -> None:
        job.state, job.started = "RUNNING", time.time()
        job.runs += 1
        due = time.time() + self.run_s / self.speedup
        heapq.heappush(self._timers, (due, next(self._seq), job.job_id, job.runs))
        self._wake.notify()
        self.on_change(job, "JOB_RUNNING")

    def _end(self, job: Job, outcome: Outcome) -> None:
        # EndTime has one-second resolution: keep every failure's EndTime distinct and increasing.
        end = max(time.time(), (job.end_time or 0) + 1.0)
        job.end_time, job.last, job.state = end, outcome, outcome.state
        self.on_change(job, f"JOB_{outcome.state}")

    def retry(self, job: Job) -> None:
        with self.lock:
            job.retries += 1
            self._start(job)

    def terminate(self, job: Job) -> None:
        with self.lock:
            if job.state == "RUNNING":
                self._end(job, Outcome.fail("terminated by user", None))
                job.started = None

    def _run(self) -> None:
        with self.lock:
            while not self._stopped:
                now = time.time()
                while self._timers and self._timers[0][0] <= now:
                    _, _, job_id, run = heapq.heappop(self._timers)
                    job = self.jobs[job_id]
                    if job.state == "RUNNING" and job.runs == run:
                        self._end(job, job.next_outcome())
                timeout = (self._timers[0][0] - now) if self._timers else 0.5
                self._wake.wait(timeout=max(0.0, min(timeout, 0.5)))

    def running(self) -> int:
        with self.lock:
            return sum(1 for j in self.jobs.values() if j.state not in FINAL_STATES)

    def stop(self) -> None:
        with self.lock:
            self._stopped = True
            self._wake.notify()
