"""The emulated fleet: jobs whose runs follow a script, each run ending in success or a failure with
a reason and an exit code. Time is scaled by `speedup`; every failure gets an EndTime at least one
second after the previous one, so each failure has its own key (unless the behaviour says a
re-failure keeps its old EndTime). A job's task has one or more instances; when a run fails, its
last instance is the one that failed (so a client must page DescribeTask to find it)."""

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

from emulator.behaviour import Behaviour
from emulator.listing import StateIndex

FINAL_STATES = frozenset({"SUCCEED", "FAILED", "FAILED_INTERRUPTED"})
TASK_NAME = "main"
TERMINATED_REASON = "terminated by user"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Outcome:
    """How one run of a job ends."""

    succeeded: bool
    reason: str = ""
    exit_code: int | None = None  # None: the node vanished, no process reported (Behaviour.lost_exit_code)
    interrupted: bool = False
    detail: str = ""  # the task instance's StateDetailedReason

    @classmethod
    def succeed(cls) -> Outcome:
        return cls(True, exit_code=0)

    @classmethod
    def fail(cls, reason: str = "task failed", exit_code: int | None = 1,
             interrupted: bool = False, detail: str = "") -> Outcome:
        return cls(False, reason, exit_code, interrupted, detail)

    def story(self, lost_exit_code: int = -1) -> str:
        """This outcome in words, for people reading the emulator's start-up lines."""
        if self.succeeded:
            return "succeeds"
        code = f"node lost, ExitCode {lost_exit_code}" if self.exit_code is None else f"exit {self.exit_code}"
        how = "fails, instance kept" if self.interrupted else "fails"
        return f"{how} ({self.reason}; {code})"

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
    seq: int = 0  # creation order, for the listing
    instances: int = 1  # task instances of its one task
    ended_failed: bool = False  # has any run of this job failed yet

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

    def story(self, lost_exit_code: int = -1) -> str:
        """The job's script in words: how each run ends, the last one repeating."""
        runs = self.script or [Outcome.succeed()]
        if len(runs) == 1:
            return f"every run {runs[0].story(lost_exit_code)}"
        words = [f"run {i} {o.story(lost_exit_code)}" for i, o in enumerate(runs, 1)]
        return ", ".join(words) + ", and so does every later run"

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

    def _instance_states(self) -> tuple[str, str]:
        """(state of every instance but the last, state of the last): a failed run failed the last."""
        state = self.task_view()["TaskState"]
        if state in ("FAILED", "FAILED_INTERRUPTED"):
            return "SUCCEED", state
        return state, state

    def _instance_metrics(self) -> dict[str, int]:
        counts = dict.fromkeys((f"{n}Count" for n in ("Submitted", "Pending", "Runnable", "Starting",
                                                      "Running", "Succeed", "FailedInterrupted",
                                                      "Failed")), 0)
        others, last = self._instance_states()
        for state, n in ((others, self.instances - 1), (last, 1)):
            counts["".join(p.capitalize() for p in state.split("_")) + "Count"] += n
        return counts

    def detail(self) -> dict[str, Any]:
        return {"JobId": self.job_id, "JobName": self.name, "Zone": "ap-guangzhou-3", "Priority": 0,
                "JobState": self.state, **self._times(), "TaskSet": [self.task_view()],
                "DependenceSet": [], "TaskMetrics": self._metrics(),
                "TaskInstanceMetrics": self._instance_metrics(),
                "StateReason": self.last.reason if self.last and not self.last.succeeded else "",
                "Tags": self._tags(), "NextAction": ""}

    def _instance(self, index: int, lost_exit_code: int) -> dict[str, Any]:
        others, last_state = self._instance_states()
        state = last_state if index == self.instances - 1 else others
        failed = state in ("FAILED", "FAILED_INTERRUPTED") and self.last is not None
        if failed and self.last is not None:
            code = lost_exit_code if self.last.exit_code is None else self.last.exit_code
            reason, detail = self.last.reason, self.last.detail
        else:
            # Still running or succeeded: no failure to report; 0 keeps ExitCode an integer.
            code, reason, detail = 0, "", ""
        view = self.task_view()
        return {"TaskInstanceIndex": index, "TaskInstanceState": state, "ExitCode": code,
                "StateReason": reason, "StateDetailedReason": detail, "ComputeNodeInstanceId": "",
                "CreateTime": view["CreateTime"], "LaunchTime": iso(self.started or self.created),
                "RunningTime": iso(self.started or self.created), "EndTime": view["EndTime"],
                "RedirectInfo": None}

    def task_detail(self, offset: int = 0, limit: int = 100, lost_exit_code: int = -1,
                    states: set[str] | None = None) -> dict[str, Any]:
        """DescribeTask: one page of the task's instances (optionally only those in `states`)."""
        indexes: Iterable[int] = range(self.instances)
        if states is not None:
            others, last = self._instance_states()
            indexes = [i for i in indexes if (last if i == self.instances - 1 else others) in states]
        page = list(indexes)[offset:offset + limit] if states is not None else \
            range(min(offset, self.instances), min(offset + limit, self.instances))
        total = len(indexes) if isinstance(indexes, list) else self.instances
        return {"JobId": self.job_id, **self.task_view(), "TaskInstanceTotalCount": total,
                "TaskInstanceSet": [self._instance(i, lost_exit_code) for i in page],
                "TaskInstanceMetrics": self._instance_metrics()}


class Fleet:
    """The jobs, and a clock thread that ends each run when its time comes."""

    def __init__(self, speedup: float = 1.0, run_s: float = 2.0, seed: int | None = None,
                 on_change: Callable[[Job, str], None] | None = None,
                 behaviour: Behaviour | None = None) -> None:
        self.speedup, self.run_s = speedup, run_s
        self.behaviour = behaviour or Behaviour()
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.by_seq: dict[int, Job] = {}
        self.index = StateIndex()
        self._rng = random.Random(seed)
        self._timers: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._job_seq = itertools.count()
        self._wake = threading.Condition(self.lock)
        self._stopped = False
        self.on_change = on_change or (lambda job, event: None)
        self._thread = threading.Thread(target=self._run, name="emulator-fleet", daemon=True)
        self._thread.start()

    def new_id(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        while True:
            job_id = "job-" + "".join(self._rng.choices(alphabet, k=8))
            if job_id not in self.jobs:
                return job_id

    def add(self, name: str, script: Iterable[Outcome], *, topic: str | None = None,
            notify: Iterable[str] = (), event_vars: dict[str, str] | None = None,
            tags: dict[str, str] | None = None, failed_with: Outcome | None = None,
            instances: int = 1) -> Job:
        """A new job. Running at once, or (with `failed_with`) already FAILED from a first run."""
        if instances < 1:
            raise ValueError("a task has at least one instance")
        with self.lock:
            job = Job(self.new_id(), name, list(script), time.time(), topic, frozenset(notify),
                      dict(event_vars or {}), dict(tags or {}), seq=next(self._job_seq),
                      instances=instances)
            self.jobs[job.job_id] = job
            self.by_seq[job.seq] = job
            self.index.add(job.seq, self._rng.random(), job.state)
            if failed_with is None:
                self._start(job)
            else:
                job.runs = 1
                self._end(job, failed_with)
            return job

    def add_failed_many(self, count: int, name: str, script: Iterable[Outcome], first: Outcome, *,
                        tags: dict[str, str] | None = None, spacing_s: float = 1.0) -> list[Job]:
        """`count` jobs already FAILED, created `spacing_s` apart ending now (oldest first), added
        in one pass: no notices, no timers, one sort of the listing."""
        script, now = list(script), time.time()
        jobs: list[Job] = []
        with self.lock:
            for i in range(count):
                created = now - (count - i) * spacing_s
                job = Job(self.new_id(), f"{name}-{i}", [first, *script], created, tags=dict(tags or {}),
                          seq=next(self._job_seq), state=first.state, runs=1, end_time=created + 1.0,
                          last=first, ended_failed=not first.succeeded)
                self.jobs[job.job_id] = job
                self.by_seq[job.seq] = job
                jobs.append(job)
            self.index.add_many(((j.seq, self._rng.random()) for j in jobs), first.state)
        return jobs

    def _set_state(self, job: Job, state: str) -> None:
        self.index.move(job.seq, job.state, state)
        job.state = state

    def _start(self, job: Job) -> None:
        self._set_state(job, "RUNNING")
        job.started = time.time()
        job.runs += 1
        due = time.time() + self.run_s / self.speedup
        heapq.heappush(self._timers, (due, next(self._seq), job.job_id, job.runs))
        self._wake.notify()
        self.on_change(job, "JOB_RUNNING")

    def _end(self, job: Job, outcome: Outcome) -> None:
        if (not outcome.succeeded and job.ended_failed and job.end_time is not None
                and self.behaviour.refailure_end_time == "keep-end-time"):
            end = job.end_time  # the re-failure reports its earlier failure's EndTime
        else:
            # EndTime has one-second resolution: keep every failure's EndTime distinct and increasing.
            end = max(time.time(), (job.end_time or 0) + 1.0)
        job.end_time, job.last = end, outcome
        job.ended_failed = job.ended_failed or not outcome.succeeded
        self._set_state(job, outcome.state)
        self.on_change(job, f"JOB_{outcome.state}")

    def retry(self, job: Job) -> None:
        with self.lock:
            job.retries += 1
            self._start(job)

    def terminate(self, job: Job) -> None:
        with self.lock:
            if job.state == "RUNNING":
                # Behaviour.terminate_reason: whether the failure says it was a termination.
                marked = self.behaviour.terminate_reason == "marked"
                self._end(job, Outcome.fail(TERMINATED_REASON, None) if marked else Outcome.fail())
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
            return self.index.count(s for s in self.index.all_states() if s not in FINAL_STATES)

    def stop(self) -> None:
        with self.lock:
            self._stopped = True
            self._wake.notify()
