"""Drain due work, then reconcile: list recent FAILED jobs and enqueue failures never seen.

Before any of it, a preflight: the configuration loads, the ledger answers, credentials are set and
one cheap DescribeJobs listing shows the Batch API accepts them. A sweep that cannot list jobs
would otherwise report "0 jobs verified" as if all were well.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from handler.commands import (
    CREDENTIAL_VARIABLES,
    EXIT_STATUS,
    Refused,
    acting_runtime,
    one_line,
    time_budget,
    where_the_store_is,
)

if TYPE_CHECKING:
    from handler.app import Runtime
    from handler.retrier import Deadline

PROG = "python -m handler sweep"


def preflight(rt: Runtime, deadline: Deadline) -> None:
    """Raise what a sweep would otherwise only log: no credentials, credentials the API refuses,
    an API or a ledger that does not answer. Takes one turn of the shared DescribeJobs limit."""
    from handler.gateway import ApiError, ErrorKind, credentials_from_env
    from handler.retrier.pacing import OutOfTime, Pacer

    if credentials_from_env() is None:
        raise Refused(f"no Tencent Cloud credentials: {CREDENTIAL_VARIABLES}")
    pacer = Pacer(rt.ledger, rt.settings, rt.gateway.timeout_s)
    try:
        with pacer.turn("DescribeJobs", deadline):
            rt.gateway.list_jobs(rt.config.default_region, "FAILED", 0, limit=1)
    except ApiError as e:
        if e.kind != ErrorKind.THROTTLED:  # throttled: the credentials were accepted
            raise
    except OutOfTime:
        raise Refused("no turn of the shared DescribeJobs limit came in time (other instances "
                      "are using it); try again in a moment") from None


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0,
                    help="stop taking work after this long (more than 0; default 300)")
    args = ap.parse_args(argv)
    time_budget(args.seconds)
    from handler.observe import Observer
    from handler.retrier import Deadline

    rt = acting_runtime()
    deadline = Deadline.after(args.seconds)
    preflight(rt, deadline)
    note = where_the_store_is(rt.config.store)
    if note:
        print(f"ledger: {note}", file=sys.stderr)
    retrier = rt.retrier(Observer())
    report = retrier.sweep(deadline, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"sweep: {report.taken} jobs verified, {len(report.retried)} retried, "
          f"{report.api_calls} API calls" + (f", stopped: {report.stopped}" if report.stopped else ""))
    return 0
