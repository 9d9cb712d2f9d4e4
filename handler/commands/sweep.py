"""Drain due work, then reconcile: list recent FAILED jobs and enqueue failures never seen."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler sweep", description=__doc__)
    ap.add_argument("--seconds", type=float, default=300.0, help="stop taking work after this long")
    args = ap.parse_args(argv)
    from handler.app import runtime
    from handler.observe import Observer
    from handler.retrier import Deadline

    rt = runtime()
    retrier = rt.retrier(Observer())
    report = retrier.sweep(Deadline.after(args.seconds),
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"sweep: {report.taken} jobs verified, {len(report.retried)} retried, "
          f"{report.api_calls} API calls" + (f", stopped: {report.stopped}" if report.stopped else ""))
    return 0
