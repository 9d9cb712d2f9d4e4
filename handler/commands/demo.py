"""The local demo: the Batch API emulator, the function behind a local HTTP endpoint on SQLite, and
a mixed fleet of jobs whose failures are pushed (with duplicates) the way a TDMQ-CMQ subscription
pushes them. Prints what was retried, what was skipped, and why.

The demo's ledger is its own, made afresh each run (var/demo.db): it is given an identity, and the
demo sets AUTORETRY_LEDGER_ID to it, so its endpoint and its sweeps pass the same ledger check as
the deployed function, on that ledger and no other (an AUTORETRY_LEDGER_ID or AUTORETRY_STORE of
the caller's is not used)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.commands import EXIT_STATUS, UsageError, acting_runtime, one_line, time_budget

PROG = "python -m handler demo"
PROGRESS_EVERY_S = 3.0
SECRET_ID, SECRET_KEY = "AKIDLOCALDEMO", "demo-secret-key"


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    script: list[Any]
    publish: bool = True


def scenarios() -> list[Scenario]:
    from emulator import Outcome

    spot = Outcome.fail(reason="CVM_SPOT_RECLAIMED: instance reclaimed", exit_code=None)
    bug = Outcome.fail(reason="task exited with code 1", exit_code=1)
    return [
        Scenario("render-spot-1", "spot reclaim, then succeeds", [spot, Outcome.succeed()]),
        Scenario("render-spot-2", "spot reclaim twice, then succeeds", [spot, spot, Outcome.succeed()]),
        Scenario("etl-flaky-mount", "mount error, then succeeds",
                 [Outcome.fail(reason="mount: /data timed out", exit_code=32), Outcome.succeed()]),
        Scenario("train-bug", "fails every run (a bug)", [bug] * 6),
        Scenario("report-ok", "succeeds", [Outcome.succeed()]),
        Scenario("index-ok", "succeeds", [Outcome.succeed()]),
        Scenario("lost-notice", "fails once; its notice is lost (the sweep finds it)",
                 [spot, Outcome.succeed()], publish=False),
    ]


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duplicates", type=int, default=2, help="extra copies of every push")
    ap.add_argument("--seconds", type=float, default=60.0, help="give up after this long")
    ap.add_argument("--verbose", action="store_true", help="show the function's JSON log lines")
    args = ap.parse_args(argv)
    if args.duplicates < 0:
        raise UsageError(f"--duplicates {args.duplicates}: expected 0 or more extra copies")
    time_budget(args.seconds)

    from emulator import Emulator

    db = Path("var/demo.db")
    db.parent.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    from handler.ledger.setup import ledger_init

    store = f"sqlite:///{db}"
    emu = Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, region="ap-guangzhou").start()
    os.environ.update({
        "AUTORETRY_STORE": store, "AUTORETRY_LEDGER_ID": ledger_init(store),
        "AUTORETRY_BATCH_ENDPOINT": emu.endpoint,
        "AUTORETRY_BATCH_PROTOCOL": "http", "AUTORETRY_LOCAL": "true",
        "AUTORETRY_REGION": "ap-guangzhou",
        "TENCENTCLOUD_SECRET_ID": SECRET_ID, "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
    })
    for name in ("AUTORETRY_POLICY", "AUTORETRY_DRY_RUN", "AUTORETRY_AUTH_TOKEN",
                 "TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY"):
        os.environ.pop(name, None)

    from handler.app import reset_runtime
    from handler.commands.serve import start
    from handler.observe import Observer
    from handler.retrier import Deadline

    reset_runtime()
    rt = acting_runtime()  # the endpoint's requests use these parts too (handler.app.runtime)
    server = start()
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    emu.subscribe("batch-events", url, format="json", duplicates=args.duplicates,
                  concurrent_duplicates=True)
    print(f"emulator on {emu.url}; function on {url} (its own SQLite ledger {db}, "
          f"AUTORETRY_LEDGER_ID={rt.config.ledger_id})")
    print(f"every failure notice is pushed {1 + args.duplicates} times, concurrently\n")

    jobs: dict[str, Scenario] = {}
    for sc in scenarios():
        job_id = emu.add_job(name=sc.name, script=sc.script, topic="batch-events" if sc.publish else None,
                             notify=["JOB_FAILED", "JOB_FAILED_INTERRUPTED"] if sc.publish else [])
        jobs[job_id] = sc

    shown = sys.stdout  # progress goes here even while the function's log lines are muted
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else contextlib.nullcontext()
    started = time.time()
    end = started + args.seconds
    next_sweep = started + 3.0
    settled = False
    ticking = threading.Event()

    def tick() -> None:  # its own thread: a sweep can hold the loop below for seconds
        while not ticking.wait(PROGRESS_EVERY_S):
            print(f"  {time.time() - started:3.0f} s  {_progress(emu, jobs)}", file=shown, flush=True)

    threading.Thread(target=tick, daemon=True).start()
    with quiet:
        while time.time() < end and not settled:
            time.sleep(0.25)
            if time.time() >= next_sweep:  # the timer trigger
                rt.retrier(Observer()).sweep(Deadline.after(20))
                next_sweep = time.time() + 3.0
            settled = _settled(emu, rt, jobs)
        ticking.set()
        # Stop pushes still on their way (duplicates) before the table, so no log line follows it.
        server.shutdown()
        emu.stop()
    print()
    _table(emu, rt, jobs)
    stubborn = next((j for j, sc in jobs.items() if sc.name == "train-bug"), "JOB_ID")
    print(f"\nthe ledger's view, from this directory (the demo's SQLite file is {db}):")
    print(f"  AUTORETRY_STORE=sqlite:///{db} .venv/bin/python -m handler ledger list")
    print(f"  AUTORETRY_STORE=sqlite:///{db} .venv/bin/python -m handler ledger show {stubborn}")
    print("your own walk-through: README.md, 'Walk-through: make a job fail and watch it retried'")
    if not settled:
        print(f"\nnot every job was settled after {args.seconds:g} s", file=sys.stderr)
        return 1
    return 0


def _failures(emu: Any, jobs: dict[str, Scenario]) -> tuple[int, int]:
    """Failures so far and retries applied. Every retry follows a failure, and a job FAILED now is
    a failure not (yet) retried."""
    snaps = [emu.job(j) for j in jobs]
    retries = sum(int(s["retries"]) for s in snaps)
    return retries + sum(1 for s in snaps if s["state"] in ("FAILED", "FAILED_INTERRUPTED")), retries


def deliveries(pushes: list[dict[str, Any]]) -> tuple[int, int]:
    """Notices the function accepted (2xx) and, of those, duplicates: copies of a message it had
    already been delivered (a topic's copies and redeliveries share the message id)."""
    ok = [p for p in pushes if isinstance(p.get("status"), int) and 200 <= p["status"] < 300]
    return len(ok), len(ok) - len({p["msg_id"] for p in ok})


def _progress(emu: Any, jobs: dict[str, Scenario]) -> str:
    failures, retries = _failures(emu, jobs)
    delivered, duplicates = deliveries(emu.pushes)
    return (f"{failures} failures so far, {retries} retried; {delivered} notices delivered "
            f"({duplicates} duplicates absorbed); {emu.count('RetryJobs')} RetryJobs calls")


def _settled(emu: Any, rt: Any, jobs: dict[str, Scenario]) -> bool:
    states = [emu.job(j)["state"] for j in jobs]
    if any(s not in ("SUCCEED", "FAILED", "FAILED_INTERRUPTED") for s in states):
        return False
    if any(True for _ in rt.ledger.queue()):
        return False
    # A sweep may decide a failure before its notices arrive: they still count once delivered.
    if not emu.topics.idle():
        return False
    # every FAILED job must have a final decision for its current failure
    for j in jobs:
        snap = emu.job(j)
        if snap["state"] == "FAILED":
            from handler.jobs import FailureKey
            st = rt.ledger.state(FailureKey("ap-guangzhou", j, snap["end_time"]))
            if st is None or st[0] not in ("RETRIED", "SKIPPED"):
                return False
    return True


def _table(emu: Any, rt: Any, jobs: dict[str, Scenario]) -> None:
    from handler.commands.ledger import failure_of
    from handler.jobs import JobRef

    counts = emu.retry_counts()
    print(f"{'job':14} {'name':16} {'story':50} {'runs':>4} {'retries':>7} {'final':8} last decision")
    print("-" * 140)
    for job_id, sc in jobs.items():
        snap = emu.job(job_id)
        record = rt.ledger.job(JobRef("ap-guangzhou", job_id)) or {}
        decisions = record.get("decisions", [])
        # A failure's decision says more than a later note that the job was running again.
        on_failures = [d for d in decisions if failure_of(str(d.get("key", "")))]
        last = (on_failures or decisions or [{}])[-1]
        said = f"{last.get('outcome', '-')}: {last.get('reason', '')}" if last else "-"
        print(f"{job_id:14} {sc.name:16} {sc.story:50} {snap['runs']:>4} "
              f"{counts.get(job_id, 0):>7} {snap['state']:8} {said}")
    delivered, duplicates = deliveries(emu.pushes)
    failures, retries = _failures(emu, jobs)
    print(f"\n{delivered} notices delivered, {duplicates} duplicates absorbed, "
          f"{emu.count('RetryJobs')} RetryJobs calls: {retries} retries for {failures} failures")
    print(f"{emu.count('DescribeJobs')} DescribeJobs calls, "
          f"{emu.count('RetryJobs', error='RequestLimitExceeded')} throttled")
