"""The operator's word is final: hold a job so that the function never retries it, release it, or
terminate it (hold it, then TerminateJob).

    python -m handler hold job-3k9x2m1a --reason "bad input; fixing the data first"
    python -m handler release job-3k9x2m1a
    python -m handler terminate job-3k9x2m1a --reason "runaway cost"

The hold is a record in the ledger (AUTORETRY_STORE) that lasts until it is released; every claim
reads it, so no instance retries a failure of a held job, whichever notice or sweep finds it. Such
a failure is kept with the outcome `held` and the hold's reason (`python -m handler ledger show
JOB_ID`). It is not retried after the release either, unless its notice comes again (`python -m
handler push JOB_ID`); failures that come after the release are decided by the policy.

`terminate` writes the hold first, so a notice or a sweep racing the termination finds it, then
calls TerminateJob (paced with every instance's calls). If the call fails the hold stays, and the
command says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from handler.commands import (
    EXIT_STATUS,
    Main,
    Refused,
    UsageError,
    acting_runtime,
    checked_job_id,
    checked_region,
    explain,
    one_line,
    where_the_store_is,
)

if TYPE_CHECKING:
    from handler.app import Runtime
    from handler.jobs import JobRef
    from handler.ledger import Hold

PROG = "python -m handler"
MAX_REASON = 300  # as a policy rule's reason
TERMINATED = "terminated by the operator"
TERMINATE_WAIT_S = 60.0  # for a turn of the shared TerminateJob limit, and the call


def _parser(command: str, reason_required: bool) -> argparse.ArgumentParser:
    about = {"hold": "never retry this job's failures until it is released",
             "release": "let the function retry this job's failures again",
             "terminate": "hold the job, then stop it with TerminateJob"}[command]
    ap = argparse.ArgumentParser(prog=f"{PROG} {command}", description=f"{about}.\n\n{__doc__}",
                                 epilog=EXIT_STATUS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job_id", help="the Batch job id, such as job-3k9x2m1a")
    ap.add_argument("--region", help="the job's region (default: the first of AUTORETRY_REGION)")
    if command != "release":
        ap.add_argument("--reason", required=reason_required,
                        help="why, in a few words: kept on the job and shown by `ledger show`"
                        + ("" if reason_required else " (default: the reason the job is held "
                           f"for already, else {TERMINATED!r})"))
    return ap


def _checked(args: argparse.Namespace, default_region: str) -> tuple[str, str]:
    """The job id and region, refused in one line (exit 2) if they cannot be a job's."""
    checked_job_id(args.job_id)
    region = checked_region(args.region or default_region)
    reason = getattr(args, "reason", None)
    if reason is not None:
        args.reason = " ".join(reason.split())
        if not args.reason or len(args.reason) > MAX_REASON:
            raise UsageError(f"--reason: expected 1 to {MAX_REASON} characters, got "
                             f"{len(args.reason)}")
    return args.job_id, region


def _runtime(args: argparse.Namespace) -> tuple[Runtime, JobRef]:
    """The function's parts, past its ledger check (AUTORETRY_LEDGER_ID), and the job."""
    from handler.config import Config
    from handler.jobs import JobRef

    config = Config.from_env()
    job_id, region = _checked(args, config.default_region)
    rt = acting_runtime(config)
    note = where_the_store_is(rt.config.store)
    if note:
        print(f"ledger: {note}", file=sys.stderr)
    return rt, JobRef(region, job_id)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _named(job: JobRef, default_region: str) -> str:
    """The job as the next command would name it."""
    return job.job_id if job.region == default_region else f"{job.job_id} --region {job.region}"


def _hold(rt: Runtime, job: JobRef, reason: str, command: str) -> tuple[Hold, Hold | None]:
    hold, before = rt.ledger.hold_job(job, reason, command)
    rt.ledger.wait_durable()  # a failover of the store must not lose the operator's word
    return hold, before


@one_line(f"{PROG} hold")
def hold(argv: list[str]) -> int:
    args = _parser("hold", reason_required=True).parse_args(argv)
    rt, job = _runtime(args)
    _, before = _hold(rt, job, args.reason, "hold")
    print(f"{job.job_id} in {job.region} is held: none of its failures is retried until "
          f"`{PROG} release {_named(job, rt.config.default_region)}`")
    if before is not None:
        print(f"(held since {_when(before.since)}; the reason {before.reason!r} is replaced)")
    return 0


@one_line(f"{PROG} release")
def release(argv: list[str]) -> int:
    args = _parser("release", reason_required=False).parse_args(argv)
    rt, job = _runtime(args)
    before = rt.ledger.release_job(job)
    if before is None:
        print(f"{job.job_id} in {job.region} was not held: nothing to release")
        return 0
    print(f"{job.job_id} in {job.region} is released (held since {_when(before.since)}: "
          f"{before.reason}). Its next failures are decided by the policy; one that came while it "
          f"was held is retried only if its notice comes again (`{PROG} push "
          f"{_named(job, rt.config.default_region)}`)")
    return 0


@one_line(f"{PROG} terminate")
def terminate(argv: list[str]) -> int:
    from handler.gateway import OPERATOR_RATE_LIMITS, ApiError, ErrorKind
    from handler.retrier import Deadline
    from handler.retrier.pacing import OutOfTime, Pacer

    args = _parser("terminate", reason_required=False).parse_args(argv)
    rt, job = _runtime(args)
    already = rt.ledger.hold_on(job) if args.reason is None else None
    hold, _ = _hold(rt, job, args.reason or (already.reason if already else TERMINATED),
                    "terminate")
    held = f"{job.job_id} in {job.region} is held ({hold.reason}), so the function will not retry it"
    again = f"`{PROG} terminate {_named(job, rt.config.default_region)}` again"
    rates = {a: r * rt.config.api_speedup for a, r in OPERATOR_RATE_LIMITS.items()}
    pacer = Pacer(rt.ledger, replace(rt.settings, rates={**rt.settings.rates, **rates}),
                  rt.gateway.timeout_s)
    try:
        with pacer.turn("TerminateJob", Deadline.after(TERMINATE_WAIT_S)):
            request_id = rt.gateway.terminate_job(job.region, job.job_id)
    except OutOfTime:
        raise Refused(f"{held}; but no turn of the shared TerminateJob limit came in time (other "
                      f"callers are using it): it was not called. Run {again}") from None
    except ApiError as e:
        # The service refusing this job (still SUBMITTED, unknown) is said in its own words;
        # anything else as every command says it (credentials, endpoint, network).
        why = (f"TerminateJob failed ({e.code}: {e.message})" if e.kind == ErrorKind.REJECTED
               else explain(e) or str(e))
        raise Refused(f"{held}; but {why}. Run {again} once that is fixed (terminating a job "
                      "that already ended changes nothing)") from None
    print(f"{held}. TerminateJob was accepted (request {request_id or '-'}): its instances end "
          f"FAILED shortly. `{PROG} release {_named(job, rt.config.default_region)}` lets the "
          "function retry its failures again")
    return 0


COMMANDS: dict[str, Main] = {"hold": hold, "release": release, "terminate": terminate}
