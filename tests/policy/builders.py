"""Small builders for policy tests: a policy from YAML text, a failure from plain facts."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from textwrap import dedent

from handler.jobs import FailureKey, JobDetail, JobView
from handler.policy import Failure, JobHistory
from handler.policy.engine import RulesPolicy
from handler.policy.loader import load_rules_policy

NOW = 1_780_000_000.0
REGION = "ap-guangzhou"

# (task name, [(exit code, instance StateReason), ...]) for each failed task
Tasks = Sequence[tuple[str, Sequence[tuple[int | None, str | None]]]]


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def policy(text: str) -> RulesPolicy:
    """A RulesPolicy from the YAML body of a file; `version: 1` is added."""
    return load_rules_policy("version: 1\n" + dedent(text).strip() + "\n")


class Details:
    """The lazy DescribeJob/DescribeTask fetch, counting calls."""

    def __init__(self, detail: JobDetail) -> None:
        self.detail, self.calls = detail, 0

    def __call__(self) -> JobDetail:
        self.calls += 1
        return self.detail


def failure(*, job_id: str = "job-abcd1234", name: str | None = "render-nightly",
            tags: dict[str, str] | None = None, event: str | None = "JOB_FAILED",
            event_vars: dict[str, str] | None = None, spent: dict[str, int] | None = None,
            reason: str | None = "task failed", tasks: Tasks = (), age_s: float = 60.0,
            rng: random.Random | None = None) -> Failure:
    end = iso(NOW - age_s)
    view = JobView(JobId=job_id, JobName=name, JobState="FAILED", EndTime=end, Tags=tags or {})
    detail = JobDetail.model_validate({
        "JobId": job_id, "StateReason": reason, "Tags": tags or {},
        "TaskSet": [{"TaskName": t, "TaskState": "FAILED",
                     "TaskInstanceSet": [{"TaskInstanceIndex": i, "TaskInstanceState": "FAILED",
                                          "ExitCode": code, "StateReason": why}
                                         for i, (code, why) in enumerate(instances)]}
                    for t, instances in tasks]})
    return Failure(key=FailureKey(REGION, job_id, end), job=view,
                   history=JobHistory(dict(spent or {})), event_name=event,
                   event_vars=dict(event_vars or {}), now=NOW, fetch_details=Details(detail),
                   rng=rng)


def detail_calls(f: Failure) -> int:
    fetch = f.fetch_details
    assert isinstance(fetch, Details)
    return fetch.calls
