"""A small in-memory Batch gateway for retrier unit tests (the end-to-end tests use the real SDK
against the emulator). It mimics RetryJobs' rules: FAILED only, all or nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from handler.gateway import ApiError, ErrorKind
from handler.jobs import JobDetail, JobView


@dataclass
class FakeGateway:
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)
    retried: list[list[str]] = field(default_factory=list)
    fail_next: list[ApiError] = field(default_factory=list)
    timeout_s: int = 1
    apply_on_error: bool = False  # with an AMBIGUOUS error: was the call applied anyway?
    apply_some_then_refuse: bool = False  # a refused batch still retried its FAILED jobs
    detail_calls: int = 0
    described: list[list[str]] = field(default_factory=list)  # the ids of each DescribeJobs call

    def fail(self, job_id: str, end_time: str, state: str = "FAILED") -> None:
        self.jobs[job_id] = {"JobId": job_id, "JobState": state, "EndTime": end_time,
                             "JobName": f"name-{job_id}"}

    def describe_jobs(self, region: str, job_ids: list[str]) -> dict[str, JobView]:
        self.described.append(list(job_ids))
        return {j: JobView.model_validate(self.jobs[j]) for j in job_ids if j in self.jobs}

    def list_jobs(self, region: str, state: str, offset: int, limit: int = 100
                  ) -> tuple[list[JobView], int]:
        views = [JobView.model_validate(j) for j in self.jobs.values() if j["JobState"] == state]
        return views[offset:offset + limit], len(views)

    def describe_job(self, region: str, job_id: str) -> JobDetail:
        self.detail_calls += 1
        return JobDetail.model_validate({"JobId": job_id, "StateReason": "x"})

    def retry_jobs(self, region: str, job_ids: list[str]) -> str:
        if self.fail_next:
            err = self.fail_next.pop(0)
            if err.kind == ErrorKind.AMBIGUOUS and self.apply_on_error:
                self._apply(job_ids)
            raise err
        bad = [j for j in job_ids if self.jobs.get(j, {}).get("JobState") != "FAILED"]
        if bad:
            if self.apply_some_then_refuse:
                self._apply([j for j in job_ids if j not in bad])
            raise ApiError("RetryJobs", ErrorKind.REJECTED, "UnsupportedOperation", f"{bad} not FAILED")
        self._apply(job_ids)
        return "req-1"

    def _apply(self, job_ids: list[str]) -> None:
        self.retried.append(list(job_ids))
        for j in job_ids:
            self.jobs[j]["JobState"] = "RUNNING"

    def count(self, job_id: str) -> int:
        return sum(batch.count(job_id) for batch in self.retried)


class Clock:
    def __init__(self) -> None:
        # Starts at the real time: SQLite's expiry cleanup reads the wall clock.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
