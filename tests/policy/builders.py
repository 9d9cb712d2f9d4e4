"""Small builders for policy tests: a policy from YAML text, a failure from plain facts."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import replace
from textwrap import dedent

from handler.jobs import FailureKey, JobDetail, JobView
from handler.policy import Failure, JobHistory, Policy, RetryDecision
from handler.policy.engine import RulesPolicy
from handler.policy.loader import load_rules_policy

NOW = 1_780_000_000.0
REGION = "ap-guangzhou"

# (task name, [(exit code, instance StateReason[, StateDetailedReason]), ...]) for each failed task
Instance = tuple[int | None, str | None] | tuple[int | None, str | None, str | None]
Tasks = Sequence[tuple[str, Sequence[Instance]]]


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def policy(text: str) -> RulesPolicy:
    """A RulesPolicy from the YAML body of a file; `version: 1` is added."""
    return load_rules_policy("version: 1\n" + dedent(text).strip() + "\n")


def failure(*, job_id: str = "job-abcd1234", name: str | None = "render-nightly",
            tags: dict[str, str] | None = None, event: str | None = "JOB_FAILED",
            event_vars: dict[str, str] | None = None, spent: dict[str, int] | None = None,
            reason: str | None = "task failed", tasks: Tasks = (), age_s: float = 60.0,
            rng: random.Random | None = None, detailed_reason: str | None = None) -> Failure:
    """A verified failure with its details (DescribeJob + DescribeTask) attached; `as_the_retrier`
    takes them off again to see whether the policy asks for them."""
    end = iso(NOW - age_s)
    view = JobView(JobId=job_id, JobName=name, JobState="FAILED", EndTime=end, Tags=tags or {})
    detail = JobDetail.model_validate({
        "JobId": job_id, "StateReason": reason, "StateDetailedReason": detailed_reason,
        "Tags": tags or {},
        "TaskSet": [{"TaskName": t, "TaskState": "FAILED",
                     "TaskInstanceSet": [{"TaskInstanceIndex": i, "TaskInstanceState": "FAILED",
                                          "ExitCode": inst[0], "StateReason": inst[1],
                                          "StateDetailedReason": inst[2] if len(inst) > 2 else None}
                                         for i, inst in enumerate(instances)]}
                    for t, instances in tasks]})
    return Failure(key=FailureKey(REGION, job_id, end), job=view,
                   history=JobHistory(dict(spent or {})), event_name=event,
                   event_vars=dict(event_vars or {}), now=NOW, details=detail, rng=rng)


def as_the_retrier(p: Policy, f: Failure) -> tuple[RetryDecision, bool]:
    """Decide `f` the way the retrier does: without details, unless the policy asks for them.
    Returns the decision and whether details were read."""
    bare = replace(f, details=None)
    if p.wants_details(bare):
        return p.decide(f), True
    return p.decide(bare), False
