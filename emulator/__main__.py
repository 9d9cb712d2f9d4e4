"""python -m emulator — run the local Batch API until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from emulator import Emulator, Faults, Outcome
from emulator.faults import KINDS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--secret-id", default="AKIDEMULATOR")
    ap.add_argument("--secret-key", default="emulator-secret")
    ap.add_argument("--region", default="ap-guangzhou")
    ap.add_argument("--speedup", type=float, default=1.0, help="time scale N: limits x N, run times / N")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="share of API calls given a fault")
    ap.add_argument("--fault-kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    ap.add_argument("--failed-jobs", type=int, default=0, help="start with this many FAILED jobs")
    ap.add_argument("--subscribe", action="append", default=[], metavar="TOPIC=URL",
                    help="push this topic's notices to URL (TDMQ-CMQ JSON envelope)")
    args = ap.parse_args(argv)

    faults = Faults(rate=args.fault_rate, kinds=tuple(k for k in args.fault_kinds.split(",") if k))
    emu = Emulator(args.secret_id, args.secret_key, args.region, speedup=args.speedup, host=args.host,
                   port=args.port, faults=faults).start()
    for spec in args.subscribe:
        topic, _, url = spec.partition("=")
        emu.subscribe(topic, url)
    for i in range(args.failed_jobs):
        emu.add_failed_job(f"seeded-{i}", [Outcome.succeed()])
    print(f"Batch API emulator on {emu.url} (region {args.region}, speedup {args.speedup})")
    print(f"  export AUTORETRY_BATCH_ENDPOINT={emu.endpoint} AUTORETRY_BATCH_PROTOCOL=http")
    print(f"  export TENCENTCLOUD_SECRET_ID={args.secret_id} TENCENTCLOUD_SECRET_KEY=<the --secret-key>")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
