"""A compute environment dies: N jobs fail at once. How fast is every one retried, against the API's
own floor, and against a naive handler?

    python bench/burst.py                    # 10,000 jobs, real limits, both paths (about 3 minutes)
    python bench/burst.py --paths http       # notices pushed over HTTP only
    python bench/burst.py --jobs 2000        # smaller
    python bench/burst.py --speedup 5        # time-scaled limits (x5), for a quicker look

The emulator runs with the documented limits (RetryJobs and DescribeJobs 2/s, 100 ids per call),
scaled by --speedup, and every notice is delivered with --duplicates extra copies. The function runs
as it is deployed, on one shared ledger (Redis on loopback by default), with a sweep every
--sweep-every seconds, and gets the notices one of two ways, one after the other in the same run:

- http: pushed by 16 concurrent senders, round-robin to --processes function processes
  (`python -m handler serve`); a push unanswered within --push-timeout (15 s, the topic's patience)
  is pushed again. The function answers within 10 s and drains the rest in a continuation.
- pull: the topic fills a TDMQ-CMQ queue; the function's pull tick (its timer trigger, the real
  entry point in a process of its own) runs every --pull-every seconds, the first --first-pull
  seconds after the first failure.

The naive handler answers each push with DescribeJob + RetryJobs and lets the topic redeliver when
throttled. Prints, per path, the time until every eligible job was retried, the floor
ceil(N/100)/2 s (scaled), their ratio, RetryJobs calls, throttled answers, double retries and missed
jobs, and the longest HTTP answer; writes a PNG plot. Exits 1 if any job was retried twice or
missed, or an HTTP answer took longer than 10 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import free_port, function_env, wait_port  # noqa: E402
from emulator import Emulator, Outcome  # noqa: E402

SECRET_ID, SECRET_KEY = "AKIDBURSTBENCH", "burst-bench-secret"
REGION = "ap-guangzhou"
TOPIC = "batch-events"
ANSWER_RULE_S = 10.0  # every HTTP invocation answers within 10 s of its start (a topic waits ~15 s)


@dataclass
class Result:
    name: str
    jobs: int
    floor_s: float
    t0: float = 0.0
    elapsed_s: float | None = None  # until every eligible job was retried; None if it never was
    ran_s: float = 0.0
    retried: int = 0
    doubles: int = 0
    missed: int = 0
    retry_calls: int = 0
    throttled: int = 0
    pushes: int = 0
    ingress_s: float = 0.0  # until the last push was answered
    longest_answer_s: float = 0.0  # the slowest HTTP answer (a push unanswered in time counts its timeout)
    late_answers: int = 0  # pushes not answered with a 2xx within the answer rule (10 s)
    first_pull_s: float | None = None  # queue pull: the first timer tick, after the first failure
    timeline: list[tuple[float, int]] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.elapsed_s / self.floor_s if self.elapsed_s is not None else None

    def projected_s(self) -> float:
        """For a run cut short: the time all N would take at the rate it managed."""
        if self.elapsed_s is not None:
            return self.elapsed_s
        return self.ran_s * self.jobs / max(self.retried, 1)


def new_emulator(args: argparse.Namespace) -> Emulator:
    return Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=args.speedup, run_s=1.0, senders=16,
                    seed=7).start()


def fail_all(emu: Emulator, n: int) -> float:
    """N jobs that fail together (a spot reclaim) and succeed when retried; returns t0."""
    spot = Outcome.fail("CVM_SPOT_RECLAIMED: the spot instance was reclaimed", None)
    for i in range(n):
        emu.add_job(f"burst-{i}", [spot, Outcome.succeed()], topic=TOPIC, notify=["JOB_FAILED"])
    while True:  # t0: the first failure
        with emu.fleet.lock:
            ends = [j.end_time for j in emu.fleet.jobs.values() if j.end_time]
        if ends:
            return min(ends)
        time.sleep(0.01)


def watch(emu: Emulator, result: Result, limit_s: float) -> None:
    """Wait until every job was retried, or the limit; then settle briefly to catch doubles."""
    start = time.time()
    while time.time() - start < limit_s:
        counts = emu.retry_counts()
        if all(counts[j] >= 1 for j in emu.fleet.jobs):
            break
        time.sleep(0.2)
    result.ran_s = time.time() - result.t0
    time.sleep(2.0 / max(emu.speedup, 1.0))
    collect(emu, result)


def collect(emu: Emulator, result: Result) -> None:
    counts = emu.retry_counts()
    result.retried = sum(1 for j in emu.fleet.jobs if counts[j] >= 1)
    result.doubles = sum(1 for j in emu.fleet.jobs if counts[j] > 1)
    result.missed = sum(1 for j in emu.fleet.jobs if counts[j] == 0)
    calls = sorted(emu.calls, key=lambda c: c["t"])
    result.retry_calls = sum(1 for c in calls if c["action"] == "RetryJobs")
    result.throttled = sum(1 for c in calls if c["error"] == "RequestLimitExceeded")
    pushes = emu.pushes
    result.pushes = len(pushes)
    result.ingress_s = max((p["t"] for p in pushes), default=result.t0) - result.t0
    result.longest_answer_s = max((p["took_s"] for p in pushes), default=0.0)
    result.late_answers = sum(1 for p in pushes if p["took_s"] > ANSWER_RULE_S)
    done = 0
    seen: set[str] = set()
    for c in calls:
        if c["action"] == "RetryJobs" and c["error"] is None and c["params"]:
            fresh = [j for j in c["params"]["JobIds"] if j not in seen]
            seen.update(fresh)
            done += len(fresh)
            result.timeline.append((c["t"] - result.t0, done))
    if result.missed == 0 and result.timeline:
        result.elapsed_s = result.timeline[-1][0]


# --- ours ---------------------------------------------------------------------------------------

QUEUE = "autoretry-notices"
TICK = ("from handler.app import main_handler; "
        "main_handler({'Type': 'Timer', 'TriggerName': 'pull', 'Message': 'pull'}, "
        "{'time_limit_in_ms': 60000})")


def run_ours(args: argparse.Namespace, via: str, code: Path = ROOT, label: str = "") -> Result:
    """The function on one shared ledger. `via` "http": every notice pushed over HTTP to
    --processes `serve` processes, which must answer within the sender's patience; "pull": the topic
    fills a TDMQ-CMQ queue and the function's pull tick (its timer) runs every --pull-every s.
    `code`: the checkout the function runs from (an earlier revision, for --baseline)."""
    emu = new_emulator(args)
    store = args.store or f"redis://127.0.0.1:6379/0?prefix=burst-{uuid.uuid4().hex[:8]}:"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"burst-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    if store == "sqlite":
        store = f"sqlite:///{tmp}/ledger.db"
    env = {**function_env(store, emu), "PYTHONPATH": str(code)}
    log = open(tmp / "function.log", "wb")  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen[bytes]] = []
    timers: list[threading.Thread] = []
    stop = threading.Event()

    def every(seconds: float, argv: list[str], first_at: float | None = None) -> None:
        """A timer trigger: start the function with `argv` every `seconds` (scaled), the first time
        at `first_at` (a wall-clock time), each run in its own process as the platform would,
        overlapping if one runs long."""
        def loop() -> None:
            wait = first_at - time.time() if first_at is not None else seconds / args.speedup
            while not stop.wait(max(0.0, wait)):
                started = time.time()
                procs.append(subprocess.Popen([sys.executable, *argv], env=env, cwd=code, stdout=log,
                                              stderr=log))
                wait = seconds / args.speedup - (time.time() - started)
        timers.append(threading.Thread(target=loop, daemon=True))
        timers[-1].start()

    try:
        name = {"http": "batch-autoretry, HTTP push", "pull": "batch-autoretry, queue pull"}[via] + label
        result = Result(name, args.jobs, floor(args))
        if via == "http":
            ports = [free_port() for _ in range(args.processes)]
            procs += [subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", str(p)],
                                       env=env, cwd=code, stdout=log, stderr=log) for p in ports]
            for p in ports:
                wait_port(p)
            emu.subscribe(TOPIC, [f"http://127.0.0.1:{p}/events" for p in ports],
                          duplicates=args.duplicates, concurrent_duplicates=True,
                          timeout_s=args.push_timeout)
        else:
            emu.cmq.create_queue(QUEUE, visibility_timeout_s=30.0)
            emu.cmq.subscribe_queue(TOPIC, QUEUE, duplicates=args.duplicates)
            env.update({"AUTORETRY_QUEUE": QUEUE, "AUTORETRY_QUEUE_ENDPOINT": emu.url})
        every(args.sweep_every, ["-m", "handler", "sweep", "--seconds", "50"])
        result.t0 = fail_all(emu, args.jobs)
        if via == "pull":
            result.first_pull_s = args.first_pull
            every(args.pull_every, ["-c", TICK], first_at=result.t0 + args.first_pull / args.speedup)
        watch(emu, result, args.max_seconds)
        return result
    finally:
        stop.set()
        for timer in timers:  # no timer starts a process after this
            timer.join()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        log.close()
        emu.stop()


def run_baseline(args: argparse.Namespace) -> Result:
    """The HTTP path with the function checked out at an earlier revision, in the same run."""
    where = Path(os.environ.get("TMPDIR", "/tmp")) / f"burst-baseline-{uuid.uuid4().hex[:8]}"
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        return run_ours(args, "http", code=where, label=f" at {rev}")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False,
                       capture_output=True)


# --- naive ----------------------------------------------------------------------------------------

def naive_server(emu: Emulator) -> ThreadingHTTPServer:
    """What a first attempt looks like: per push, DescribeJob, then RetryJobs if FAILED; 503 when
    throttled so the topic redelivers. No ledger, no batching."""
    from tencentcloud.batch.v20170312 import batch_client, models
    from tencentcloud.common.credential import Credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    local = threading.local()

    def client() -> Any:
        if not hasattr(local, "c"):
            profile = ClientProfile(httpProfile=HttpProfile(endpoint=emu.endpoint, protocol="http"))
            local.c = batch_client.BatchClient(Credential(SECRET_ID, SECRET_KEY), REGION, profile)
        return local.c

    class Naive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = 200
            try:
                notice = json.loads(json.loads(body)["msgBody"])
                job_id = notice["Events"][0]["Batch"]["JobId"]
                req = models.DescribeJobRequest()
                req.JobId = job_id
                if client().DescribeJob(req).JobState == "FAILED":
                    retry = models.RetryJobsRequest()
                    retry.JobIds = [job_id]
                    client().RetryJobs(retry)
            except TencentCloudSDKException as e:
                status = 503 if str(e.code).startswith("RequestLimitExceeded") else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Naive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_naive(args: argparse.Namespace) -> Result:
    emu = new_emulator(args)
    server = naive_server(emu)
    try:
        emu.subscribe(TOPIC, f"http://127.0.0.1:{server.server_address[1]}/events",
                      duplicates=args.duplicates, concurrent_duplicates=True, timeout_s=90.0)
        result = Result("naive (DescribeJob + RetryJobs per notice)", args.jobs, floor(args))
        result.t0 = fail_all(emu, args.jobs)
        watch(emu, result, args.naive_seconds)
        return result
    finally:
        server.shutdown()
        emu.stop()


# --- report ---------------------------------------------------------------------------------------

def floor(args: argparse.Namespace) -> float:
    return float(math.ceil(args.jobs / 100) / 2 / args.speedup)


def row(r: Result) -> str:
    took = f"{r.elapsed_s:8.1f}" if r.elapsed_s is not None else f">{r.ran_s:7.1f}"
    ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else f"~{r.projected_s() / r.floor_s:5.0f}x"
    return (f"{r.name:44} {took} s {r.floor_s:7.1f} s {ratio} {r.retried:>8} {r.retry_calls:>8} "
            f"{r.throttled:>9} {r.doubles:>7} {r.missed:>7}")


def plot(results: list[Result], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for r in results:
        xs = [0.0] + [t for t, _ in r.timeline]
        ys = [0] + [n for _, n in r.timeline]
        ax.step(xs, ys, where="post", label=r.name)
    fl = floor(args)
    ax.plot([0, fl], [0, args.jobs], "k--", label=f"API floor: ceil(N/100)/2 s = {fl:.1f} s")
    scaled = f" (time x{args.speedup:g})" if args.speedup != 1 else ""
    ax.set_xlabel("seconds since the first failure" + scaled)
    ax.set_ylabel("jobs retried")
    ax.set_title(f"{args.jobs} jobs fail at once; every notice delivered {1 + args.duplicates} time(s)")
    ax.set_xlim(0, max(fl * 1.6, max((r.timeline[-1][0] for r in results if r.timeline), default=fl)))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--paths", default="http,pull",
                    help="how notices reach the function, run one after the other: http, pull or both")
    ap.add_argument("--duplicates", type=int, default=1, help="extra copies of every notice")
    ap.add_argument("--processes", type=int, default=4, help="HTTP: function processes sharing the ledger")
    ap.add_argument("--push-timeout", type=float, default=15.0,
                    help="HTTP: seconds a push waits for its answer before it is pushed again (a topic's)")
    ap.add_argument("--pull-every", type=float, default=60.0, help="queue: seconds between pull ticks")
    ap.add_argument("--first-pull", type=float, default=1.0,
                    help="queue: seconds from the first failure to the first pull tick (0 to --pull-every)")
    ap.add_argument("--store", default=None,
                    help="ledger URL, or 'sqlite' (default: Redis on 127.0.0.1:6379, own prefix)")
    ap.add_argument("--speedup", type=float, default=1.0, help="time scale of the emulator's limits")
    ap.add_argument("--sweep-every", type=float, default=60.0, help="seconds between sweeps (scaled)")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--naive-seconds", type=float, default=60.0,
                    help="the naive handler runs this long; its full time is projected from its rate")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run the HTTP path with the function as it was at git revision REV")
    ap.add_argument("--plot", type=Path, default=ROOT / "bench" / "burst.png")
    args = ap.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - {"http", "pull"}:
        ap.error(f"--paths {args.paths!r}: expected http, pull or http,pull")

    ours = [run_ours(args, via) for via in paths]
    baseline = run_baseline(args) if args.baseline else None
    naive = None if args.no_naive else run_naive(args)
    results = [*ours, *(r for r in (baseline, naive) if r is not None)]
    print(f"\n{args.jobs} failed jobs, {args.duplicates} duplicate(s) of each notice, HTTP: {args.processes} "
          f"function processes; queue: a pull tick every {args.pull_every:g} s; sweep every "
          f"{args.sweep_every:g} s; speedup {args.speedup:g}")
    print(f"{'handler':44} {'all retried':>10} {'floor':>9} {'ratio':>7} {'retried':>8} {'RetryJobs':>8} "
          f"{'throttled':>9} {'doubles':>7} {'missed':>7}")
    for r in results:
        print(row(r))
    print()
    for r in results:
        if r.pushes:
            print(f"{r.name}: {r.pushes} pushes, the longest answer {r.longest_answer_s:.1f} s, "
                  f"{r.late_answers} over {ANSWER_RULE_S:g} s; the last answered {r.ingress_s:.1f} s after "
                  f"the first failure")
        if r.first_pull_s is not None:
            print(f"{r.name}: first pull tick {r.first_pull_s:g} s after the first failure "
                  f"(a timer every {args.pull_every:g} s adds up to that long)")
    for r in ours:
        print(f"{r.name}: {r.retried / max(r.retry_calls, 1):.1f} jobs per RetryJobs call")
    if naive is not None:
        best = min(r.projected_s() for r in ours)
        print(f"naive: {naive.retried} retried in {naive.ran_s:.0f} s, projected {naive.projected_s():.0f} s "
              f"for all {args.jobs} ({naive.projected_s() / max(best, 1e-9):.0f}x ours)")
    plot(results, args.plot, args)
    print(f"plot: {args.plot}")
    ok = all(r.doubles == 0 and r.missed == 0 and r.late_answers == 0 for r in ours)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
