"""python -m emulator — run the local Batch API (and the Tag service for its jobs) until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import errno
import shutil
import signal
import sys
import threading

from emulator import Emulator, Faults, Outcome
from emulator.behaviour import (
    ABSENT_QUEUE_CODES,
    LISTING_ORDERS,
    RATE_LIMITS,
    REFAILURE_END_TIMES,
    RETRY_REFUSALS,
    TAG_REFUSALS,
    TERMINATE_REASONS,
)
from emulator.faults import KINDS

PROG = "python -m emulator"
SHOWN_JOBS = 20  # start-up lines list at most this many jobs
# The same convention as `python -m handler`'s commands.
EXIT_FAILED, EXIT_USAGE = 1, 2
EXIT_STATUS = ("exit status: 0 stopped; 1 a runtime failure (a port in use, an address it cannot "
               "listen on); 2 a usage error (an argument or a value it cannot take)")


class _Refused(Exception):
    """A start-up problem told in one line: an argument it cannot take (exit 2)."""

    exit_status = EXIT_USAGE


class _CannotListen(_Refused):
    """The address cannot be listened on: a runtime failure (exit 1)."""

    exit_status = EXIT_FAILED


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise _Refused(f"--port must be a number from 0 to 65535 (0: any free port), not {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", default="9100", help="0 picks a free port")
    ap.add_argument("--secret-id", default="AKIDEMULATOR")
    ap.add_argument("--secret-key", default="emulator-secret")
    ap.add_argument("--region", default="ap-guangzhou")
    ap.add_argument("--uin", default="100000000001", help="the account in six-segment tag resource names")
    ap.add_argument("--speedup", type=float, default=1.0, help="time scale N: limits x N, run times / N")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="share of API calls given a fault")
    ap.add_argument("--fault-kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    ap.add_argument("--failed-jobs", type=int, default=0,
                    help="start with this many FAILED jobs (spot reclaimed; succeed when retried)")
    ap.add_argument("--retained-failed", type=int, default=0, metavar="N",
                    help="also hold N old FAILED jobs (exit 1, fail again if retried), added in bulk")
    ap.add_argument("--subscribe", action="append", default=[], metavar="TOPIC=URL",
                    help="push this topic's notices to URL (TDMQ-CMQ JSON envelope)")
    ap.add_argument("--retry-refusal", choices=RETRY_REFUSALS, default="refuse-all",
                    help="RetryJobs naming a job that is not FAILED: retry nothing, or retry the "
                         "FAILED ones and answer the same error")
    ap.add_argument("--refailure-end-time", choices=REFAILURE_END_TIMES, default="new",
                    help="EndTime of a job that fails again after a retry")
    ap.add_argument("--listing-order", choices=LISTING_ORDERS, default="newest-first",
                    help="order of DescribeJobs' listing")
    ap.add_argument("--tags-readonly", action="store_true",
                    help="the Tag service refuses to change a Batch job's tags")
    ap.add_argument("--tag-refusal", choices=TAG_REFUSALS, default="error",
                    help="with --tags-readonly: an error, or FailedResources in a successful answer")
    ap.add_argument("--lost-exit-code", type=int, default=-1,
                    help="ExitCode of an instance whose node was lost (spot reclaimed)")
    ap.add_argument("--rate-limit", choices=RATE_LIMITS, default="window",
                    help="how N requests per second are counted: at most N in any window of one "
                         "second, or a token bucket of one token refilled every 1/N s")
    ap.add_argument("--terminate-reason", choices=TERMINATE_REASONS, default="marked",
                    help="StateReason of a job TerminateJob ended: 'terminated by user', or the "
                         "same as an ordinary task failure")
    ap.add_argument("--absent-queue-code", choices=ABSENT_QUEUE_CODES, default="ResourceNotFound",
                    help="the error DescribeCmqQueueDetail answers for a queue that does not exist")
    ap.add_argument("--function-url-in-answer", action="store_true",
                    help="SCF shows a function URL's address in its trigger's TriggerDesc (\"Url\"); "
                         "where Tencent answers it is undocumented, so by default it does not")
    ap.add_argument("--scf-python", default=None, metavar="PATH",
                    help="the interpreter that runs deployed functions (default: this one)")
    return ap


def _start(args: argparse.Namespace) -> Emulator:
    port = _port(args.port)
    try:
        faults = Faults(rate=args.fault_rate, kinds=tuple(k for k in args.fault_kinds.split(",") if k))
    except ValueError as e:
        raise _Refused(str(e)) from None
    if args.failed_jobs < 0 or args.retained_failed < 0:
        raise _Refused("--failed-jobs and --retained-failed cannot be negative")
    if args.speedup <= 0:
        raise _Refused("--speedup must be above 0")
    if args.scf_python is not None and shutil.which(args.scf_python) is None:
        raise _Refused(f"--scf-python {args.scf_python!r} is not an interpreter this machine can run")
    try:
        return Emulator(args.secret_id, args.secret_key, args.region, speedup=args.speedup, host=args.host,
                        port=port, faults=faults, uin=args.uin, retry_refusal=args.retry_refusal,
                        refailure_end_time=args.refailure_end_time, listing_order=args.listing_order,
                        tags_writable=not args.tags_readonly, tag_refusal=args.tag_refusal,
                        lost_exit_code=args.lost_exit_code, rate_limit=args.rate_limit,
                        terminate_reason=args.terminate_reason,
                        absent_queue_code=args.absent_queue_code,
                        url_in_answer=args.function_url_in_answer, scf_python=args.scf_python)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise _CannotListen(f"port {port} on {args.host} is in use; pick another with --port "
                                "(or --port 0 for any free one)") from None
        raise _CannotListen(f"cannot listen on {args.host}:{port}: {e.strerror or e}") from None
    except OverflowError:
        raise _Refused(f"--port must be a number from 0 to 65535, not {port}") from None


def _say_hello(emu: Emulator, args: argparse.Namespace) -> None:
    b = emu.behaviour
    print(f"Batch API emulator on {emu.url} (region {args.region}, speedup {args.speedup:g})")
    print(f"It accepts exactly: SecretId {args.secret_id}  SecretKey {args.secret_key}")
    print("Point the function at it:")
    speedup = f" AUTORETRY_API_SPEEDUP={args.speedup:g}" if args.speedup != 1 else ""
    print(f"  export AUTORETRY_BATCH_ENDPOINT={emu.endpoint} AUTORETRY_BATCH_PROTOCOL=http "
          f"AUTORETRY_REGION={args.region}{speedup}")
    print(f"  export TENCENTCLOUD_SECRET_ID={args.secret_id} TENCENTCLOUD_SECRET_KEY={args.secret_key}")
    print(f"Tag service (2018-08-13) on the same address; jobs are "
          f"{emu.resource('job-…')}, tags {'writable' if b.tags_writable else 'read-only'}")
    print(f"Behaviour: RetryJobs refusal {b.retry_refusal}; re-failure EndTime {b.refailure_end_time}; "
          f"listing {b.listing_order}; lost-node ExitCode {b.lost_exit_code}; "
          f"rate limit {b.rate_limit}; TerminateJob reason {b.terminate_reason}; "
          f"missing queue {b.absent_queue_code}")
    print(f"SCF (2018-04-16) on the same address runs deployed functions on "
          f"{emu.scf.runtime.interpreter('Python3.10')} (Python3.10); function URLs at "
          f"{emu.url}/scf-url/<id>/, "
          f"{'shown' if emu.scf.url_in_answer else 'not shown'} in TriggerDesc")
    jobs = emu.jobs()
    if not jobs:
        print("No jobs yet: start with --failed-jobs N, or SubmitJob "
              "(a tag emulator:fail=<reason>|<exit code> makes every run fail)")
        return
    print(f"Jobs ({len(jobs)}):")
    with emu.fleet.lock:
        stories = {j.job_id: j.story(b.lost_exit_code) for j in emu.fleet.jobs.values()}
    for job in jobs[:SHOWN_JOBS]:
        print(f"  {job['job_id']}  {job['state']:<9} {job['name']}: {stories[job['job_id']]}")
    if len(jobs) > SHOWN_JOBS:
        print(f"  … and {len(jobs) - SHOWN_JOBS} more like them")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        emu = _start(args).start()
    except _Refused as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.exit_status
    for spec in args.subscribe:
        topic, _, url = spec.partition("=")
        emu.subscribe(topic, url)
    for i in range(args.failed_jobs):
        emu.add_failed_job(f"seeded-{i}", [Outcome.succeed()])
    if args.retained_failed:
        emu.add_failed_jobs(args.retained_failed, "retained")
    _say_hello(emu, args)
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
