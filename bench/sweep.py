"""The sweep at volume: how long until a job whose notice was lost is retried, when the account holds
50,000 retained FAILED jobs, whatever order DescribeJobs lists them in?

    python bench/sweep.py                                    # every order, 50,000 retained, x5
    # the look at the end of the listing, once a first pass proved it oldest first:
    python bench/sweep.py --orders oldest-first --retained-age old --inject-after 8 \
        --inject-minutes 4 --minutes 14
    python bench/sweep.py --speedup 10 --minutes 12          # quicker, cruder

The emulator holds --retained FAILED jobs (no notices) and answers at the real API limits times
--speedup (DescribeJobs 2/s shared by sweeps and flushes); every scaled time below is real time
times the speedup. A timer fires once a (scaled) minute and runs a sweep on a new instance (a new
runtime: only the ledger remembers) with a 60 s limit. Meanwhile jobs fail with notices (flush
traffic: enqueued and pumped, as a delivery is) and --lost jobs fail without one, at random
moments in --inject-minutes (after --inject-after). The retained jobs are someone else's (the
policy skips them by name: nothing can be skipped by age), or with --retained-age old they ended
hours before the policy's max_failure_age.

Scaling is not exact: the function's 1 s reserve and its 1 s floor on a call's timeout do not
scale, so at x5 a sweep lists about 70 pages a minute where production lists about 95: the
figures err on the slow side.

Prints, per order: time from each lost failure to its retry (median, max, scaled minutes), how
long a pass over the listing took, and DescribeJobs calls spent sweeping (listing) vs flushing
(by id). Exits 1 if a lost notice was not retried within --bound minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import function_env  # noqa: E402
from emulator import Emulator, Outcome  # noqa: E402
from handler.app import _deadline, build_runtime  # noqa: E402
from handler.config import Config  # noqa: E402
from handler.jobs import JobRef  # noqa: E402
from handler.observe import Observer  # noqa: E402
from handler.retrier import Deadline  # noqa: E402

ORDERS = ("newest-first", "oldest-first", "unordered")
POLICY_YOUNG = """
version: 1
default: {action: RETRY}
rules: [{name: not-ours, when: {job_name: 'retained-*'}, action: SKIP, reason: not ours}]
"""
POLICY_OLD = "version: 1\ndefault: {action: RETRY}\nlimits: {max_failure_age: 2h}\n"


@dataclass
class Run:
    order: str
    lost_at: dict[str, float] = field(default_factory=dict)
    found_after: dict[str, float] = field(default_factory=dict)  # scaled seconds
    sweeps: int = 0
    passes: int = 0
    pass_s: list[float] = field(default_factory=list)  # scaled seconds
    listing_calls: int = 0
    flush_calls: int = 0
    notified_at: dict[str, float] = field(default_factory=dict)
    notified_after: dict[str, float] = field(default_factory=dict)  # scaled seconds


def run_order(order: str, args: argparse.Namespace, store: str) -> Run:
    s = args.speedup
    minute = 60.0 / s
    rng = random.Random(args.seed)
    run = Run(order)
    with Emulator(speedup=s, run_s=30.0, listing_order=order, seed=args.seed) as emu:
        retained = emu.add_failed_jobs(args.retained, "retained")
        if args.retained_age == "old":
            with emu.fleet.lock:  # they ended hours before the policy's max age
                for j in retained:
                    job = emu.fleet.jobs[j]
                    job.created -= 6 * 3600
                    job.end_time = (job.end_time or job.created) - 6 * 3600
        env = function_env(store, emu)
        env["AUTORETRY_POLICY"] = POLICY_OLD if args.retained_age == "old" else POLICY_YOUNG
        config = Config.from_env(env)
        # The gateway reads its credentials from the process environment, as on SCF.
        os.environ.update({k: v for k, v in env.items() if k.startswith("TENCENTCLOUD_")})
        stop = threading.Event()
        started = time.time()
        end = started + args.minutes * minute

        def timer() -> None:
            tick = started
            while not stop.is_set() and tick < end:
                rt = build_runtime(config)  # a cold instance
                try:
                    limit = {"time_limit_in_ms": int(60_000 / s)}
                    rt.retrier(Observer(quiet=True)).sweep(_deadline(limit, time.time()))
                    cur = rt.ledger.sweep_cursor(config.regions[0])
                    if cur.passes > run.passes:
                        run.passes = cur.passes
                        if cur.last_pass_s is not None:
                            run.pass_s.append(cur.last_pass_s * s)
                finally:
                    rt.ledger.store.close()
                run.sweeps += 1
                tick += minute
                stop.wait(max(0.0, tick - time.time()))

        def notices() -> None:
            # Flush traffic: every 10 scaled seconds a few jobs fail and their notices arrive.
            n = 0
            while not stop.is_set() and time.time() < end:
                rt = build_runtime(config)
                try:
                    retrier = rt.retrier(Observer(quiet=True))
                    for _ in range(args.notified_per_10s):
                        job = emu.add_failed_job(f"notified-{n}", [Outcome.succeed()])
                        run.notified_at[job] = time.time()
                        retrier.enqueue(JobRef(config.regions[0], job), "JOB_FAILED", {})
                        n += 1
                    retrier.pump(Deadline.after(5.0))  # a delivery flushes what it can at once
                finally:
                    rt.ledger.store.close()
                stop.wait(10.0 / s)

        threads = [threading.Thread(target=timer), threading.Thread(target=notices)]
        for t in threads:
            t.start()
        first = args.inject_after * minute
        moments = sorted(first + rng.uniform(0, args.inject_minutes * minute)
                         for _ in range(args.lost))
        try:
            while time.time() < end:
                now = time.time() - started
                while moments and moments[0] <= now:
                    moments.pop(0)
                    job = emu.add_failed_job(f"lost-{len(run.lost_at)}", [Outcome.succeed()])
                    run.lost_at[job] = time.time()
                seen(emu, run.lost_at, run.found_after, s)
                seen(emu, run.notified_at, run.notified_after, s)
                if not moments and len(run.found_after) == len(run.lost_at) and \
                        time.time() - started > first + args.inject_minutes * minute:
                    break
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
        with emu._lock:
            calls = [c for c in emu.calls if c["action"] == "DescribeJobs" and c["params"]]
        run.listing_calls = sum(1 for c in calls if "Filters" in c["params"])
        run.flush_calls = sum(1 for c in calls if "JobIds" in c["params"])
    return run


def seen(emu: Emulator, failed_at: dict[str, float], after: dict[str, float], s: float) -> None:
    """Note when each job failed at `failed_at` was first retried (scaled seconds after)."""
    now = time.time()
    with emu.fleet.lock:
        retried = [j for j in list(failed_at) if j not in after and emu.fleet.jobs[j].retries]
    for j in retried:
        after[j] = (now - failed_at[j]) * s


def minutes(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values) / 60:.1f} max {max(values) / 60:.1f} min"


def report(run: Run, bound_s: float) -> bool:
    found = sorted(run.found_after.values())
    lost = len(run.lost_at)
    passes = f"{statistics.median(run.pass_s) / 60:.1f} min" if run.pass_s else "-"
    total = run.listing_calls + run.flush_calls
    share = f"{100 * run.listing_calls / total:.0f} %" if total else "-"
    print(f"{run.order}: {len(found)}/{lost} lost notices retried, time to retry "
          f"{minutes(found)}; a pass over the listing {passes}; {run.sweeps} sweeps", flush=True)
    print(f"  {len(run.notified_after)}/{len(run.notified_at)} notified failures retried, "
          f"{minutes(list(run.notified_after.values()))}; DescribeJobs: {run.listing_calls} "
          f"listing (sweep) / {run.flush_calls} by id (flushes): {share} sweeping", flush=True)
    return len(found) == lost and (not found or found[-1] <= bound_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", default=",".join(ORDERS))
    ap.add_argument("--retained", type=int, default=50_000)
    ap.add_argument("--retained-age", choices=("young", "old"), default="young",
                    help="young: within max age but not ours; old: hours past max_failure_age")
    ap.add_argument("--speedup", type=float, default=5.0)
    ap.add_argument("--minutes", type=float, default=16.0, help="scaled minutes per order, at most")
    ap.add_argument("--inject-after", type=float, default=0.0,
                    help="scaled minutes before the first lost notice (e.g. after a first pass)")
    ap.add_argument("--inject-minutes", type=float, default=6.0)
    ap.add_argument("--lost", type=int, default=12)
    ap.add_argument("--notified-per-10s", type=int, default=5)
    ap.add_argument("--bound", type=float, default=10.0, help="minutes")
    ap.add_argument("--store", default=None, help="a ledger URL (default: a fresh SQLite file)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"{args.retained} retained FAILED jobs ({args.retained_age}), API limits x{args.speedup:g}"
          f" (times below are scaled back), a timer a minute, {args.lost} lost notices per order",
          flush=True)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for order in args.orders.split(","):
            store = args.store or f"sqlite:///{tmp}/ledger-{uuid.uuid4().hex[:6]}.db"
            ok = report(run_order(order, args, store), args.bound * 60) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
