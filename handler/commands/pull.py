"""Pull the TDMQ-CMQ queue by hand: receive batches, put their notices in the ledger, delete them,
then drain what is due, the way the function's timer does."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler pull", description=__doc__)
    ap.add_argument("--queue", help="queue name (default: $AUTORETRY_QUEUE)")
    ap.add_argument("--once", action="store_true", help="drain the queue once, then exit")
    ap.add_argument("--seconds", type=float, default=55.0, help="time budget of each round")
    ap.add_argument("--wait", type=int, default=3, metavar="S",
                    help="long-poll this long for messages when the queue is empty (0 to 30)")
    args = ap.parse_args(argv)
    from handler.app import runtime
    from handler.cmq import QueueSettings
    from handler.observe import Observer
    from handler.pull import tick
    from handler.retrier import Deadline

    try:
        settings = QueueSettings.from_env(queue=args.queue)
    except ValueError as e:
        print(f"pull: {e}", file=sys.stderr)
        return 2
    rt = runtime()
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
                  f"{report.deleted} deleted, {report.poison} poison; {len(flushed.retried)} retried"
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
