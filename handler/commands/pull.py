"""Pull the TDMQ-CMQ queue by hand: receive batches, put their notices in the ledger, delete them,
then drain what is due, the way the function's timer does.

A real queue is the deployed function's: pulling it takes its messages away from the function, so
its notices must go into the function's own ledger. Unless the queue is on this machine (an
emulator on loopback), AUTORETRY_STORE must name the function's store and AUTORETRY_LEDGER_ID its
identity; either missing or not matching, nothing is received.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from urllib.parse import urlsplit

from handler.commands import (
    EXIT_STATUS,
    Refused,
    UsageError,
    acting_runtime,
    one_line,
    time_budget,
)

PROG = "python -m handler pull"
MAX_WAIT_S = 30  # BatchReceiveMessage's pollingWaitSeconds: 0 to 30


def on_this_machine(url: str) -> bool:
    """Whether a queue's address is loopback (an emulator here), not a deployment's queue."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: resolved elsewhere, so taken as real
        return False


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queue", help="queue name (default: $AUTORETRY_QUEUE)")
    ap.add_argument("--once", action="store_true", help="drain the queue once, then exit")
    ap.add_argument("--seconds", type=float, default=55.0, help="time budget of each round")
    ap.add_argument("--wait", type=int, default=3, metavar="S",
                    help=f"long-poll this long for messages when the queue is empty (0 to {MAX_WAIT_S})")
    args = ap.parse_args(argv)
    time_budget(args.seconds)
    if not 0 <= args.wait <= MAX_WAIT_S:
        raise UsageError(f"--wait {args.wait}: expected 0 to {MAX_WAIT_S} seconds (the queue's "
                         "long-poll limit)")
    from handler.cmq import QueueSettings
    from handler.observe import Observer
    from handler.pull import tick
    from handler.retrier import Deadline

    if args.queue is not None:
        try:  # the name alone, with an address that cannot be wrong: a bad --queue is usage
            QueueSettings.from_env({"AUTORETRY_QUEUE_ENDPOINT": "127.0.0.1"}, queue=args.queue)
        except ValueError:
            raise UsageError(f"--queue {args.queue!r}: expected a queue name (a letter, then up to "
                             "63 letters, digits, - or _)") from None
    try:
        settings = QueueSettings.from_env(queue=args.queue)
    except ValueError as e:  # the environment's queue settings
        raise Refused(str(e)) from None
    real = not on_this_machine(settings.url)
    rt = acting_runtime(takes=f"the queue {settings.queue} at {settings.url}" if real else None)
    client = settings.client()
    print(f"pulling {settings.queue} at {client.scheme}://{client.host}", file=sys.stderr)
    status = 0
    try:
        while True:
            started = time.time()
            observer = Observer()
            retrier = rt.retrier(observer)
            deadline = Deadline.after(args.seconds)
            report, flushed = tick(client, retrier, observer, deadline, rt.config.regions,
                                   wait_s=0 if args.once else args.wait)
            print(f"pull: {report.received} received, {report.accepted} in the ledger, "
                  f"{report.deleted} deleted, {report.poison} poison, {report.foreign} foreign; "
                  f"{len(flushed.retried)} retried"
                  + (f"; stopped: {report.stopped}" if report.stopped else ""), flush=True)
            status = 1 if report.errors else 0
            if args.once:
                return status
            # At most one round a second, whether or not the server long-polls.
            time.sleep(max(0.0, 1.0 - (time.time() - started)))
    except KeyboardInterrupt:
        return status
    finally:
        client.close()
