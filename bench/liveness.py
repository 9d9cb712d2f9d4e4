"""Liveness after a crash: how long a drainer SIGKILLed mid-drain holds up the fleet's next retry.

    python bench/liveness.py                 # 3 trials at Tencent's pace (speedup 1), SQLite
    python bench/liveness.py --trials 5 --store redis://127.0.0.1:6379/15

Each trial: a job fails and its notice reaches one function process (`python -m handler invoke`,
a direct invocation: it drains for up to its whole deadline). The emulator holds its DescribeJobs
past the client's timeout, so it is mid-drain, lease held, when it is SIGKILLed. Then another
job fails, and its notice reaches another instance every 0.2 s (the topic's redeliveries, more
failures) until a RetryJobs is applied. Printed: the seconds from the kill to that RetryJobs, per
trial, beside the drainer's lease (Settings.renewed_lease_s), the bound it should keep.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import function_env  # noqa: E402
from emulator import Emulator, Faults  # noqa: E402
from tests.pushes import failure_push  # noqa: E402

SECRET_ID, SECRET_KEY = "AKIDLIVENESS", "liveness-bench-secret"


def lease_left(store_url: str) -> float:
    """How long the drainer lease still runs, 0 if nobody holds it."""
    from handler.ledger import open_store
    from handler.ledger.records import DRAINER_KEY

    store = open_store(store_url)
    try:
        rec = store.get([DRAINER_KEY]).get(DRAINER_KEY)
    finally:
        store.close()
    if rec is None or not rec.value.get("owner"):
        return 0.0
    return max(0.0, float(rec.value.get("lease_until") or 0) - time.time())


def wait_for(what: str, done: object, timeout_s: float = 60.0) -> None:
    end = time.time() + timeout_s
    while not done():  # type: ignore[operator]
        if time.time() > end:
            raise RuntimeError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.02)


def trial(emu: Emulator, env: dict[str, str], workdir: Path, n: int) -> tuple[float, float]:
    """Seconds from the drainer's death to the next applied RetryJobs, and what was left of its
    lease when it died."""
    from handler import app

    emu.faults.rate = 1.0
    first = emu.add_failed_job(f"first-{n}")
    event = workdir / f"notice-{n}.json"
    event.write_text(json.dumps(emu.notice(first)))
    described = emu.count("DescribeJobs")
    with (workdir / f"drainer-{n}.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "handler", "invoke", str(event)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for("the drainer's first DescribeJobs",
                     lambda: lease_left(env["AUTORETRY_STORE"]) and emu.count("DescribeJobs") > described)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            left = lease_left(env["AUTORETRY_STORE"])
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    emu.faults.rate = 0.0
    retried = emu.count("RetryJobs", None)
    second = emu.add_failed_job(f"second-{n}")
    app.reset_runtime()
    while emu.count("RetryJobs", None) == retried:
        if time.time() - killed_at > 120:
            raise RuntimeError("no RetryJobs within 120 s of the drainer's death")
        app.main_handler(failure_push(emu, second), {"time_limit_in_ms": 15000})
        time.sleep(0.2)
    at = min(c["t"] for c in emu.calls if c["action"] == "RetryJobs" and c["error"] is None
             and c["t"] > killed_at)
    # Let the dead drainer's claim and entries expire, and this trial's work finish.
    wait_for("the fleet idle", lambda: not lease_left(env["AUTORETRY_STORE"]))
    return at - killed_at, left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--store", default=None, help="a store URL (default: a SQLite file of its own)")
    args = ap.parse_args()
    from handler.continuation import settle
    from handler.retrier import Settings

    workdir = Path(tempfile.mkdtemp(prefix="liveness-"))
    faults = Faults(rate=0.0, kinds=("timeout",), actions=("DescribeJobs",), timeout_s=8.0)
    with Emulator(SECRET_ID, SECRET_KEY, speedup=args.speedup, faults=faults) as emu:
        env = function_env(args.store or f"sqlite:///{workdir}/ledger.db", emu)
        os.environ.update(env)
        waits = []
        for n in range(args.trials):
            waited, left = trial(emu, env, workdir, n)
            waits.append(waited)
            print(f"trial {n + 1}: next RetryJobs {waited:.1f} s after the drainer's death "
                  f"({left:.1f} s of its lease were left)", flush=True)
        settle(30)
    lease = Settings.scaled(args.speedup).renewed_lease_s
    print(f"liveness: a drainer SIGKILLed mid-drain delayed the next RetryJobs by median "
          f"{statistics.median(waits):.1f} s, max {max(waits):.1f} s over {len(waits)} trials "
          f"(speedup {args.speedup:g}); the drainer's lease is {lease:g} s, renewed every "
          f"{lease / 3:.1f} s (logs: {workdir})")
    return 0 if max(waits) <= lease + 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
