"""`python -m handler policy check FILE` and `python -m handler policy explain FILE --job JOB`.

check   validates a policy file: prints OK and a one-screen summary, or every problem (exit 1).
explain shows how the policy decides one failed job: each rule, matched or not and why, then the
        decision. JOB is a DescribeJob JSON file (with TaskInstanceSet inside failed tasks for
        exit-code rules), '-' for that JSON on stdin, or a job id read through the Batch API with
        the function's own settings (AUTORETRY_BATCH_ENDPOINT, AUTORETRY_REGION, credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from handler.jobs import FailureKey, JobDetail, JobView
from handler.notices import JOB_ID_PATTERN
from handler.policy import Action, Failure, JobHistory
from handler.policy.durations import format_duration
from handler.policy.engine import Explanation, RulesPolicy
from handler.policy.loader import PolicyError, load_rules_policy

DEFAULT_EVENT = "JOB_FAILED"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler policy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    check = sub.add_parser("check", help="validate a policy file and summarise it")
    check.add_argument("file", help="policy file (YAML or JSON), or '-' for stdin")
    ex = sub.add_parser("explain", help="show which rule decides a job, and why")
    ex.add_argument("file", help="policy file (YAML or JSON)")
    ex.add_argument("--job", required=True,
                    help="DescribeJob JSON file, '-' for stdin, or a job id (read via the Batch API)")
    ex.add_argument("--event", default=DEFAULT_EVENT,
                    help=f"the notice's EventName (default {DEFAULT_EVENT}; 'none' = found by the sweep)")
    ex.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="a notice EventVar (repeatable)")
    ex.add_argument("--spent", action="append", default=[], metavar="COUNTER=N",
                    help="retries already spent, e.g. attempts=2 (repeatable)")
    ex.add_argument("--now", default=None,
                    help="evaluate as of this ISO time, or 'end' for the job's EndTime (default: now)")
    ex.add_argument("--region", default=None, help="region for a job id (default AUTORETRY_REGION)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        policy = _load(args.file)
    except PolicyError as e:
        print(f"INVALID: {e}", file=sys.stderr)
        return 1
    if args.cmd == "check":
        print_summary(policy, sys.stdout)
        return 0
    return _explain(policy, args)


def _load(file: str) -> RulesPolicy:
    if file == "-":
        return load_rules_policy(sys.stdin.read() or " ")
    if not Path(file).is_file():
        raise PolicyError(f"policy file {file}: not found")
    return load_rules_policy(file)


# ---- check ---------------------------------------------------------------------------------------


def print_summary(policy: RulesPolicy, out: TextIO) -> None:
    spec, limits = policy.spec, policy.spec.limits
    print(f"OK: {policy.source}", file=out)
    print(f"  default   {spec.default.action} ({spec.default.reason})", file=out)
    fleet = (f"{limits.fleet_budget.max_retries} retries per {format_duration(limits.fleet_budget.window)}"
             if limits.fleet_budget else "none")
    print(f"  limits    max_attempts {limits.max_attempts}, max_uncounted {limits.max_uncounted}, "
          f"max_failure_age {format_duration(limits.max_failure_age)}", file=out)
    print(f"  backoff   {limits.backoff.summary()}", file=out)
    print(f"  fleet     {fleet}", file=out)
    sources = [s for s, on in (("job tags", spec.overrides.tags), ("event vars", spec.overrides.event_vars))
               if on]
    print(f"  overrides {', '.join(sources) or 'off'}", file=out)
    if not spec.rules:
        print("  rules     none: every failure gets the default", file=out)
    else:
        print("  rules (first match wins; * = needs DescribeJob/DescribeTask):", file=out)
        width = max(len(r.name) for r in spec.rules)
        for i, r in enumerate(spec.rules, 1):
            spend = ""
            if r.action == "RETRY":
                spend = f" cap {r.max_attempts if r.max_attempts is not None else limits.max_attempts}"
            elif r.action == "RETRY_UNCOUNTED":
                cap = r.max_uncounted if r.max_uncounted is not None else limits.max_uncounted
                spend = f" cap {cap} on {r.counter_name!r}"
            if r.backoff is not None:
                spend += f", backoff {limits.backoff.merged(r.backoff).summary()}"
            star = "*" if r.when.needs_details else " "
            print(f"   {star}{i:>2}. {r.name:<{width}}  {r.action}{spend}", file=out)
            when = r.when.summary()
            print(f"        when {when if len(when) <= 100 else when[:99] + '…'}", file=out)


# ---- explain -------------------------------------------------------------------------------------


class JobInputError(Exception):
    pass


def _explain(policy: RulesPolicy, args: argparse.Namespace) -> int:
    try:
        view, detail = _read_job(args.job, args.region)
        history = JobHistory(_pairs(args.spent, "--spent", int))
        event_vars = _pairs(args.var, "--var", str)
    except JobInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    end_time = view.EndTime or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        now = _now(args.now, end_time)
    except ValueError:
        print(f"error: --now {args.now!r}: expected an ISO time such as 2026-05-01T10:00:00Z, or 'end'",
              file=sys.stderr)
        return 1
    fetched: list[bool] = []

    def fetch() -> JobDetail:
        fetched.append(True)
        return detail

    event = None if args.event.lower() == "none" else args.event.upper()
    region = args.region or os.environ.get("AUTORETRY_REGION", "ap-guangzhou").split(",")[0].strip()
    # The same key the function would compute, so a jittered delay shown here is the real one.
    failure = Failure(key=FailureKey(region, view.JobId, end_time), job=view,
                      history=history, event_name=event, event_vars=event_vars, now=now,
                      fetch_details=fetch)
    if view.JobState != "FAILED" or not view.EndTime:
        print(f"note: the job is {view.JobState}{'' if view.EndTime else ' with no EndTime'}; the "
              "function decides only FAILED jobs. Showing the rules as if it had failed.")
    print_explanation(policy, failure, policy.explain(failure), sys.stdout)
    return 0


def print_explanation(policy: RulesPolicy, failure: Failure, ex: Explanation, out: TextIO) -> None:
    job = failure.job
    name = f" {job.JobName!r}" if job.JobName else ""
    age = format_duration(max(0, round(failure.now - _iso_epoch(failure.key.end_time))))
    print(f"job {job.JobId}{name} {job.JobState}, ended {failure.key.end_time} ({age} before now)",
          file=out)
    tags = ", ".join(f"{k}={v}" for k, v in job.Tags.items()) or "none"
    evars = ", ".join(f"{k}={v}" for k, v in failure.event_vars.items()) or "none"
    spent = ", ".join(f"{k}={v}" for k, v in failure.history.counters.items()) or "none"
    print(f"event {failure.event_name or 'none (sweep)'}; event vars: {evars}; tags: {tags}; "
          f"spent: {spent}", file=out)
    for line in ex.checks:
        print(f"  {line}", file=out)
    if ex.rules:
        width = max(len(r.name) for r in ex.rules)
        for r in ex.rules:
            mark = {"matched": "MATCH", "no": "no", "shadowed": "match", "not reached": "-",
                    "forced": "FORCED"}[r.status]
            why = r.why or ("not reached" if r.status == "not reached" else "")
            print(f"  {r.index + 1:>2}. {r.name:<{width}}  {r.action:<15} {mark:<6} {why}".rstrip(),
                  file=out)
    elif not policy.spec.rules:
        print("  (the policy has no rules)", file=out)
    d = ex.decision
    by = f"rule {d.rule!r}" if d.rule in {r.name for r in policy.spec.rules} else d.rule
    print(f"decision: {d.action} by {by}: {d.reason}", file=out)
    if d.action == Action.RETRY:
        fleet = (f"; fleet budget {d.fleet.max_retries} per {format_duration(d.fleet.window_s)}"
                 if d.fleet else "")
        print(f"  spends counter {d.counter!r} (cap {d.cap}){fleet}", file=out)
    if d.rule == "max_failure_age":
        print("  (to see the rules as of the failure itself, add --now end)", file=out)
    print("details (DescribeJob/DescribeTask): "
          + ("needed" if ex.details_needed else "not needed"), file=out)


def _read_job(source: str, region: str | None) -> tuple[JobView, JobDetail]:
    if source == "-":
        return _job_from_json(sys.stdin.read(), "stdin")
    path = Path(source)
    if path.is_file():
        return _job_from_json(path.read_text(encoding="utf-8"), str(path))
    if re.match(JOB_ID_PATTERN, source):
        return _job_from_api(source, region)
    raise JobInputError(f"--job {source!r}: not a file, '-' (stdin), or a job id like job-abcd1234")


def _job_from_json(text: str, where: str) -> tuple[JobView, JobDetail]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise JobInputError(f"{where}: not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("Response"), dict):
        data = data["Response"]
    if not isinstance(data, dict):
        raise JobInputError(f"{where}: expected a DescribeJob response object")
    try:
        return JobView.model_validate(data), JobDetail.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise JobInputError(f"{where}: not a DescribeJob response: {field}: {first['msg']}") from None


def _job_from_api(job_id: str, region: str | None) -> tuple[JobView, JobDetail]:
    from handler.config import Config, ConfigError
    from handler.gateway import ApiError, BatchGateway

    try:
        config = Config.from_env()
    except ConfigError as e:
        raise JobInputError(str(e)) from None
    gateway = BatchGateway(endpoint=config.batch_endpoint, protocol=config.batch_protocol)
    try:
        detail = gateway.describe_job(region or config.default_region, job_id)
    except ApiError as e:
        raise JobInputError(f"DescribeJob {job_id}: {e.code}: {e.message}") from None
    data = detail.model_dump()
    data.setdefault("JobState", "UNKNOWN")
    return JobView.model_validate(data), detail


def _pairs(items: list[str], flag: str, kind: type[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise JobInputError(f"{flag} {item!r}: expected NAME=VALUE")
        try:
            out[name] = kind(value)
        except ValueError:
            raise JobInputError(f"{flag} {item!r}: expected a whole number after '='") from None
    return out


def _iso_epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _now(spec: str | None, end_time: str) -> float:
    if spec is None:
        return time.time()
    if spec.lower() == "end":
        return _iso_epoch(end_time)
    return _iso_epoch(spec)
