"""`python -m handler policy check FILE...` and `python -m handler policy explain FILE --job JOB`.

check   validates policy files. One file: OK and a one-screen summary, or every problem. Several:
        one line per file. Exit 1 if any file is not valid.
explain shows how the policy decides one failed job: each rule, matched or not and why, then the
        decision. JOB is a DescribeJob JSON file (with TaskInstanceSet inside failed tasks for
        exit-code rules), '-' for that JSON on stdin, or a job id read through the Batch API with
        the function's own settings (AUTORETRY_BATCH_ENDPOINT, AUTORETRY_REGION, credentials).
        Retries already spent come from the ledger (AUTORETRY_STORE) unless --spent is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from handler.commands import EXIT_FAILED, EXIT_STATUS, EXIT_USAGE
from handler.jobs import FailureKey, JobDetail, JobView, iso_epoch
from handler.notices import JOB_ID_PATTERN
from handler.policy import Action, Failure, JobHistory
from handler.policy.durations import format_duration
from handler.policy.engine import Explanation, RulesPolicy
from handler.policy.loader import PolicyError, load_rules_policy
from handler.policy.overrides import PREFIX, unreadable_tags

DEFAULT_EVENT = "JOB_FAILED"
THROTTLE_TRIES = 4  # DescribeJob refused as throttled: wait 1s, 2s, 4s between tries, then give up
sleep: Callable[[float], None] = time.sleep  # tests replace it


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler policy", description=__doc__,
                                 epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    check = sub.add_parser("check", help="validate policy files and summarise them")
    check.add_argument("files", nargs="+", metavar="FILE",
                       help="policy file (YAML or JSON), or '-' for stdin")
    ex = sub.add_parser("explain", help="show which rule decides a job, and why")
    ex.add_argument("file", help="policy file (YAML or JSON)")
    ex.add_argument("--job", required=True,
                    help="DescribeJob JSON file, '-' for stdin, or a job id (read via the Batch API)")
    ex.add_argument("--event", default=DEFAULT_EVENT,
                    help=f"the notice's EventName (default {DEFAULT_EVENT}; 'none' = found by the sweep)")
    ex.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="a notice EventVar (repeatable)")
    ex.add_argument("--spent", action="append", default=[], metavar="COUNTER=N",
                    help="retries already spent, e.g. attempts=2 (repeatable; default: read from "
                         "the ledger at AUTORETRY_STORE)")
    ex.add_argument("--now", default=None,
                    help="evaluate as of this ISO time, or 'end' for the job's EndTime (default: now)")
    ex.add_argument("--region", default=None, help="region for a job id (default AUTORETRY_REGION)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.cmd == "check":
        return _check(args.files)
    try:
        policy = _load(args.file)
    except PolicyError as e:
        print(f"INVALID: {e}", file=sys.stderr)
        return 1
    return _explain(policy, args)


def _load(file: str) -> RulesPolicy:
    if file == "-":
        return load_rules_policy(sys.stdin.read() or " ")
    if not Path(file).is_file():
        raise PolicyError(f"policy file {file}: not found")
    return load_rules_policy(file)


# ---- check ---------------------------------------------------------------------------------------


def _check(files: list[str]) -> int:
    if len(files) == 1:
        try:
            policy = _load(files[0])
        except PolicyError as e:
            print(f"INVALID: {e}", file=sys.stderr)
            return 1
        print_summary(policy, sys.stdout)
        return 0
    bad = 0
    for file in files:
        try:
            policy = _load(file)
        except PolicyError as e:
            bad += 1
            # The whole report on one line: the file's header, then each problem after a '|'.
            head, *problems = str(e).splitlines()
            print(" | ".join([f"INVALID: {head}", *(p.strip().removeprefix("- ") for p in problems)]),
                  file=sys.stderr)
            continue
        n = len(policy.spec.rules)
        print(f"OK: {policy.source} ({n} rule{'' if n == 1 else 's'}, default "
              f"{policy.spec.default.action})")
    return 1 if bad else 0


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
    sources = [s for s, on in (("job tags", spec.overrides.tags),
                               ("event vars (lower or disable only)", spec.overrides.event_vars)) if on]
    print(f"  overrides {', '.join(sources) or 'off'}", file=out)
    if spec.notify is not None:
        print(f"  notify    {', '.join(spec.notify.outcomes) or 'nothing'}", file=out)
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
    """The job cannot be read (its file, or the Batch API). Exit 1."""


class JobArgumentError(JobInputError):
    """An argument's value explain cannot take. Exit 2, as a usage error."""


def _explain(policy: RulesPolicy, args: argparse.Namespace) -> int:
    region = args.region or os.environ.get("AUTORETRY_REGION", "ap-guangzhou").split(",")[0].strip()
    try:
        view, detail = _read_job(args.job, region)
        event_vars = _pairs(args.var, "--var", str)
        spent = _pairs(args.spent, "--spent", int) if args.spent else None
    except JobInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, JobArgumentError) else EXIT_FAILED
    end_time = view.EndTime if view.end_epoch is not None else None
    key_end = end_time or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        now = _now(args.now, key_end)
    except ValueError:
        print(f"error: --now {args.now!r}: expected an ISO time such as 2026-05-01T10:00:00Z, or 'end'",
              file=sys.stderr)
        return EXIT_USAGE
    # The same key the function would compute, so a jittered delay shown here is the real one.
    key = FailureKey(region, view.JobId, key_end)
    history, spent_from = _ledger_history(key) if spent is None else (JobHistory(spent), None)
    event = None if args.event.lower() == "none" else args.event.upper()
    failure = Failure(key=key, job=view, history=history, event_name=event, event_vars=event_vars,
                      now=now, details=detail)
    if view.bad_end_time:
        print(f"note: the job is FAILED with EndTime {view.EndTime!r}, not a time: the function "
              "skips it (bad_end_time). Showing the rules as if it had failed now.")
    elif view.JobState != "FAILED" or end_time is None:
        print(f"note: the job is {view.JobState}; the function decides only FAILED jobs. Showing "
              "the rules as if it had failed.")
    for warning in _tag_warnings(policy, view):
        print(f"warning: {warning}")
    print_explanation(policy, failure, policy.explain(failure), sys.stdout, spent_from)
    return 0


def _tag_warnings(policy: RulesPolicy, view: JobView) -> list[str]:
    """`autoretry:*` tags this policy cannot read, or does not read at all."""
    ours = {k: v for k, v in view.Tags.items() if k.strip().lower().startswith(PREFIX)}
    if not ours:
        return []
    if not policy.spec.overrides.tags:
        return [f"tag {k}={v!r} is not read: this policy sets overrides: {{tags: false}}"
                for k, v in ours.items()]
    return [f"cannot read {note}; it is ignored"
            for note in unreadable_tags(ours, [r.name for r in policy.spec.rules])]


def print_explanation(policy: RulesPolicy, failure: Failure, ex: Explanation, out: TextIO,
                      spent_from: str | None = None) -> None:
    job = failure.job
    name = f" {job.JobName!r}" if job.JobName else ""
    age = format_duration(max(0, round(failure.now - iso_epoch(failure.key.end_time))))
    print(f"job {job.JobId}{name} {job.JobState}, ended {failure.key.end_time} ({age} before now)",
          file=out)
    tags = ", ".join(f"{k}={v}" for k, v in job.Tags.items()) or "none"
    evars = ", ".join(f"{k}={v}" for k, v in failure.event_vars.items()) or "none"
    spent = ", ".join(f"{k}={v}" for k, v in failure.history.counters.items()) or "none"
    spent += f" ({spent_from})" if spent_from else ""
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
        if failure.history.spent(d.counter) >= d.cap:
            print(f"  the ledger refuses the claim: SKIP, {d.over_cap_reason}", file=out)
    if d.rule == "max_failure_age":
        print("  (to see the rules as of the failure itself, add --now end)", file=out)
    print("details (DescribeJob/DescribeTask): "
          + ("needed" if ex.details_needed else "not needed"), file=out)


def _ledger_history(key: FailureKey) -> tuple[JobHistory, str]:
    """Retries the job spent, as the function's ledger (AUTORETRY_STORE) records them, and where
    they came from. An unreadable ledger counts nothing spent, and says so."""
    from handler.config import LOCAL_STORE
    from handler.ledger import Ledger, describe_store, open_store

    url = os.environ.get("AUTORETRY_STORE", "").strip() or LOCAL_STORE
    shown = describe_store(url)
    if url.startswith("sqlite:") and not Path(url.removeprefix("sqlite://")[1:] or "-").exists():
        return JobHistory(), f"no ledger at {shown}; set AUTORETRY_STORE or pass --spent"
    try:
        store = open_store(url)
        try:
            history = JobHistory(Ledger(store).history(key.job, deciding=key).counters)
        finally:
            store.close()
    except Exception as e:  # any store's failure: the explanation still helps without the spend
        # Only the error's type: a store's message can carry its URL, password included.
        return JobHistory(), f"cannot read the ledger at {shown}: {type(e).__name__}; pass --spent"
    return history, f"from the ledger at {shown}"


def _read_job(source: str, region: str) -> tuple[JobView, JobDetail]:
    if source == "-":
        return _job_from_json(sys.stdin.read(), "stdin")
    path = Path(source)
    if path.is_file():
        return _job_from_json(path.read_text(encoding="utf-8"), str(path))
    if re.match(JOB_ID_PATTERN, source):
        return _job_from_api(source, region)
    raise JobArgumentError(f"--job {source!r}: not a file, '-' (stdin), or a job id like job-abcd1234")


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


def _job_from_api(job_id: str, region: str) -> tuple[JobView, JobDetail]:
    from handler.config import Config, ConfigError
    from handler.gateway import ApiError, BatchGateway, ErrorKind

    try:
        config = Config.from_env()
    except ConfigError as e:
        raise JobInputError(str(e)) from None
    gateway = BatchGateway(endpoint=config.batch_endpoint, protocol=config.batch_protocol)
    for attempt in range(THROTTLE_TRIES):
        try:
            detail = gateway.describe_job(region, job_id)
            break
        except ApiError as e:
            action = e.action if e.action.startswith("Describe") else "DescribeJob"
            if e.kind != ErrorKind.THROTTLED:
                raise JobInputError(f"{action} {job_id}: {e.code}: {e.message}") from None
            if attempt == THROTTLE_TRIES - 1:
                raise JobInputError(f"{action} {job_id}: the Batch API is throttling this account "
                                    f"({e.code}) after {THROTTLE_TRIES} tries; try again in a "
                                    "minute") from None
            sleep(2.0 ** attempt)
    data = detail.model_dump()
    data.setdefault("JobState", "UNKNOWN")
    return JobView.model_validate(data), detail


def _pairs(items: list[str], flag: str, kind: type[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise JobArgumentError(f"{flag} {item!r}: expected NAME=VALUE")
        try:
            out[name] = kind(value)
        except ValueError:
            raise JobArgumentError(f"{flag} {item!r}: expected a whole number after '='") from None
    return out


def _now(spec: str | None, end_time: str) -> float:
    if spec is None:
        return time.time()
    if spec.lower() == "end":
        return iso_epoch(end_time)
    return iso_epoch(spec)
