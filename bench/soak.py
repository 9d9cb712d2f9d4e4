"""Soak: thousands of jobs failing while the Batch API misbehaves, the function's processes are killed
and its store goes away. Does every eligible failure still get exactly one retry?

    python bench/soak.py                                   # 3,000 jobs, 20 % faults, SQLite, 2 processes
    python bench/soak.py --store redis                     # a Redis server of its own (AOF, own port)
    python bench/soak.py --kill-every 2 --kill-on-retry 0.05   # SIGKILL function processes, restart them
    python bench/soak.py --store redis --outage-at 10 --outage-s 4  # stop the Redis server mid-run

The emulator (time-scaled by --speedup: limits xN, run times and redelivery delays /N) answers every
action with a fault at --fault-rate: InternalError, RequestLimitExceeded, HTTP 500, a held request
(client timeout), a reset connection, and the ambiguous case (RetryJobs applied, answer lost). Its
topic pushes every JOB_FAILED notice (with --duplicates extra copies) round-robin to --processes
`python -m handler serve` processes sharing one ledger, and redelivers on non-2xx; a timer runs
`python -m handler sweep` every --sweep-every seconds.

The fleet: `once` jobs fail, then succeed when retried (1 retry due); `twice` fail twice (2);
`stubborn` always fail (3: the default policy's cap); `fine` succeed and then get a forged
JOB_FAILED notice (0). A job retried more often than due is a double (a stubborn one beyond 3 is
also over budget); less often, missed. Exits 1 on any double, missed or over-budget job.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local import free_port, function_env, wait_port  # noqa: E402
from emulator import Emulator, Faults, Outcome  # noqa: E402
from emulator.faults import KINDS  # noqa: E402

SECRET_ID, SECRET_KEY = "AKIDSOAKBENCH", "soak-bench-secret"
REGION = "ap-guangzhou"
TOPIC = "batch-events"
CAP = 3  # the default policy: at most 3 retries in a job's lifetime
# class -> (share of the fleet, retries due)
CLASSES: dict[str, tuple[float, int]] = {"once": (0.70, 1), "twice": (0.10, 2), "stubborn": (0.15, CAP),
                                         "fine": (0.05, 0)}


@dataclass
class SoakConfig:
    jobs: int = 3000
    fault_rate: float = 0.2
    fault_kinds: tuple[str, ...] = KINDS
    store: str = "sqlite"  # "sqlite", "redis" (a server of our own) or a store URL
    processes: int = 2
    speedup: float = 20.0
    duplicates: int = 1
    waves: int = 30  # jobs are added in this many waves, spread over the first part of the run
    wave_gap_s: float = 0.5
    sweep_every: float = 2.0  # real seconds between sweeps (the timer trigger)
    kill_every: float = 0.0  # real seconds between SIGKILLs of a random function process (0: never)
    kill_on_retry: float = 0.0  # chance that an applied RetryJobs kills a function process before the answer
    outage_at: float = 0.0  # seconds into the run the Redis server is killed (0: never)
    outage_s: float = 0.0  # how long it stays down
    max_seconds: float = 300.0
    seed: int = 7
    workdir: Path | None = None
    quiet: bool = False


@dataclass
class SoakResult:
    config: SoakConfig
    by_class: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)  # job -> retries due
    counts: dict[str, int] = field(default_factory=dict)  # job -> retries applied
    faults: dict[str, int] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    retry_calls: int = 0  # RetryJobs requests answered (or faulted)
    retry_applied_calls: int = 0  # of which the service applied
    retry_refused_not_failed: int = 0  # UnsupportedOperation: a retry of a job no longer FAILED
    pushes: int = 0
    pushes_failed: int = 0  # deliveries answered non-2xx or not at all (then redelivered)
    pushes_5xx: int = 0
    outage_pushes_5xx: int = 0  # 5xx answers while the store was down
    outage_redelivered_ok: int = 0  # of the messages answered 5xx in the outage, later answered 2xx
    outage_lost: int = 0  # messages answered 5xx in the outage and never 2xx
    # Seconds (real) from each job's first failure to its first applied retry, for jobs retried.
    first_retry_s: list[float] = field(default_factory=list)
    kills: int = 0
    kills_in_retry: int = 0
    restarts: int = 0
    elapsed_s: float = 0.0
    finished: bool = False
    workdir: str = ""

    @property
    def retries(self) -> int:
        return sum(self.counts.values())

    @property
    def due(self) -> int:
        return sum(self.expected.values())

    @property
    def doubles(self) -> list[str]:
        return [j for j, n in self.expected.items() if self.counts.get(j, 0) > n]

    @property
    def missed(self) -> list[str]:
        return [j for j, n in self.expected.items() if self.counts.get(j, 0) < n]

    @property
    def over_budget(self) -> list[str]:
        return [j for j in self.expected if self.counts.get(j, 0) > CAP]

    @property
    def ok(self) -> bool:
        return not (self.doubles or self.missed or self.over_budget)

    def report(self) -> str:
        c = self.config
        kinds = ", ".join(f"{k} {self.faults.get(k, 0)}" for k in c.fault_kinds)
        classes = ", ".join(f"{k} {n}" for k, n in self.by_class.items())
        calls = ", ".join(f"{a} {n}" for a, n in sorted(self.api_calls.items()))
        lines = [
            f"soak: {len(self.expected)} jobs ({classes}); fault rate {c.fault_rate:g}; store {c.store}; "
            f"{c.processes} function process(es); speedup {c.speedup:g}; {c.duplicates} duplicate push(es)",
            f"API calls answered: {sum(self.api_calls.values())} ({calls})",
            f"faults injected: {sum(self.faults.values())} ({kinds})",
            f"pushes: {self.pushes} deliveries, {self.pushes_failed} not 2xx (redelivered), "
            f"{self.pushes_5xx} 5xx",
            f"RetryJobs calls: {self.retry_calls} ({self.retry_applied_calls} applied, "
            f"{self.retry_refused_not_failed} refused as not FAILED); "
            f"{self.retries / max(self.retry_applied_calls, 1):.1f} jobs per applied call",
            f"retries: {self.retries} applied, {self.due} due",
        ]
        if self.first_retry_s:
            waits = sorted(self.first_retry_s)
            p50, top = waits[len(waits) // 2], waits[-1]
            # The API's floor for a wave's jobs failing together: a DescribeJobs turn, then one
            # RetryJobs turn per 100 jobs, at 2 calls/s each (in real seconds at the speedup).
            per_wave = max(1, -(-c.jobs // c.waves))
            floor = (1 + -(-per_wave // 100)) * 0.5 / c.speedup
            # Real seconds: the function's leases have floors in real time (a lease shorter than
            # a few seconds would be lost to a busy machine), so scaling them up would mislead.
            lines.append(f"first retry after a job's first failure: median {p50:.2f} s, max "
                         f"{top:.2f} s (real seconds at x{c.speedup:g}); the API's floor for a "
                         f"wave {floor:.2f} s")
        if c.kill_every or c.kill_on_retry:
            lines.append(f"crashes: {self.kills} SIGKILLs ({self.kills_in_retry} while a RetryJobs answer "
                         f"was on its way), {self.restarts} restarts")
        if c.outage_at:
            lines.append(f"store outage: {c.outage_s:g} s; {self.outage_pushes_5xx} deliveries answered 5xx "
                         f"meanwhile, {self.outage_redelivered_ok} of their messages redelivered and "
                         f"answered 2xx later, {self.outage_lost} never")
        lines.append(f"doubles {len(self.doubles)}, missed {len(self.missed)}, over budget "
                     f"{len(self.over_budget)}  ({'all retried' if self.finished else 'NOT finished'} "
                     f"after {self.elapsed_s:.1f} s)")
        for name, jobs in (("doubles", self.doubles), ("missed", self.missed),
                           ("over budget", self.over_budget)):
            if jobs:
                shown = ", ".join(f"{j}={self.counts.get(j, 0)}/{self.expected[j]}" for j in jobs[:10])
                lines.append(f"  {name}: {shown}{' ...' if len(jobs) > 10 else ''}")
        lines.append("PASS" if self.ok else f"FAIL (ledger and logs in {self.workdir})")
        return "\n".join(lines)


class RedisServer:
    """A redis-server of our own on a free port, with an append-only file fsynced on every write, so
    that a kill -9 loses nothing it acknowledged (as a managed Redis with persistence)."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Functions:
    """--processes `python -m handler serve` processes, kept alive: one killed is restarted on its
    port at once; and the timer, a `python -m handler sweep` every few seconds."""

    def __init__(self, n: int, env: dict[str, str], workdir: Path, rng: random.Random) -> None:
        self.env, self.rng = env, rng
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.sweeper: subprocess.Popen[bytes] | None = None
        self.log = open(workdir / "function.log", "ab")  # noqa: SIM115 - closed in stop()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.kills = self.restarts = 0

    def _spawn(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "handler", "serve", "--port", str(self.ports[i])], env=self.env,
            cwd=ROOT, stdout=self.log, stderr=self.log)

    def start(self) -> Functions:
        for i in range(len(self.ports)):
            self._spawn(i)
        for p in self.ports:
            wait_port(p)
        threading.Thread(target=self._supervise, daemon=True).start()
        return self

    def _supervise(self) -> None:
        while not self.stopped.wait(0.05):
            with self.lock:
                for i, proc in enumerate(self.procs):
                    if proc is not None and proc.poll() is not None:
                        self._spawn(i)
                        self.restarts += 1

    def sweep_loop(self, every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            self.sweep_once(stop)

    def sweep_once(self, stop: threading.Event | None = None, seconds: float = 20.0) -> None:
        with self.lock:
            if self.stopped.is_set() and stop is not None:
                return
            self.sweeper = subprocess.Popen(
                [sys.executable, "-m", "handler", "sweep", "--seconds", str(seconds)], env=self.env,
                cwd=ROOT, stdout=self.log, stderr=self.log)
        self.sweeper.wait()

    def kill_one(self) -> bool:
        """SIGKILL one running function process (a server or the sweep) picked at random."""
        with self.lock:
            alive = [p for p in self.procs if p is not None and p.poll() is None]
            if self.sweeper is not None and self.sweeper.poll() is None:
                alive.append(self.sweeper)
            if not alive:
                return False
            victim = self.rng.choice(alive)
            try:
                victim.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                return False
            self.kills += 1
            return True

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            procs = [p for p in [*self.procs, self.sweeper] if p is not None]
            for p in procs:
                if p.poll() is None:
                    p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()


def _script(kind: str) -> list[Outcome]:
    spot = Outcome.fail("CVM_SPOT_RECLAIMED: the spot instance was reclaimed", None)
    bug = Outcome.fail("task exited with code 1", 1)
    return {"once": [spot, Outcome.succeed()], "twice": [spot, bug, Outcome.succeed()],
            "stubborn": [bug], "fine": [Outcome.succeed()]}[kind]


def run_soak(config: SoakConfig) -> SoakResult:
    rng = random.Random(config.seed)
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = SoakResult(config, workdir=str(workdir))
    say = (lambda msg: None) if config.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if config.outage_at and config.store != "redis":
        raise ValueError("--outage-at needs --store redis (a server of our own to stop)")

    faults = Faults(rate=config.fault_rate, kinds=config.fault_kinds, seed=config.seed,
                    timeout_s=1.5)  # the function's client gives up after 1 s at speedup >= 5
    emu = Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=config.speedup, run_s=2.0, faults=faults,
                   seed=config.seed).start()
    redis_server = RedisServer(workdir).start() if config.store == "redis" else None
    if redis_server is not None:
        store = redis_server.url
    elif config.store == "sqlite":
        store = f"sqlite:///{workdir}/ledger.db"
    else:
        store = config.store
    functions = Functions(config.processes, function_env(store, emu), workdir, rng)
    stop = threading.Event()
    outage: list[float] = []  # [down at, up at]

    # A RetryJobs the service applied: kill a function process before its answer leaves.
    record = emu.record

    def record_and_maybe_kill(call: dict[str, Any]) -> None:
        record(call)
        if (call["action"] == "RetryJobs" and call["error"] is None and config.kill_on_retry
                and not stop.is_set() and rng.random() < config.kill_on_retry and functions.kill_one()):
            result.kills_in_retry += 1

    emu.record = record_and_maybe_kill  # type: ignore[method-assign]

    # When each job first failed, for the time to its first retry.
    failed_at: dict[str, float] = {}
    on_change = emu.fleet.on_change

    def note_failure(job: Any, event: str) -> None:
        if event == "JOB_FAILED":
            failed_at.setdefault(job.job_id, time.time())
        on_change(job, event)

    emu.fleet.on_change = note_failure

    def killer() -> None:
        while not stop.wait(rng.uniform(0.5, 1.5) * config.kill_every):
            functions.kill_one()

    def store_outage() -> None:
        assert redis_server is not None
        if stop.wait(config.outage_at):
            return
        say(f"[soak] store outage: killing redis on :{redis_server.port} for {config.outage_s:g} s")
        redis_server.kill()
        outage.append(time.time())
        stop.wait(config.outage_s)
        redis_server.start()
        outage.append(time.time())
        say("[soak] store back")

    started = time.time()
    try:
        functions.start()
        emu.subscribe(TOPIC, [f"http://127.0.0.1:{p}/events" for p in functions.ports],
                      duplicates=config.duplicates, concurrent_duplicates=True, timeout_s=15.0,
                      max_attempts=30)
        threading.Thread(target=functions.sweep_loop, args=(config.sweep_every, stop), daemon=True).start()
        if config.kill_every:
            threading.Thread(target=killer, daemon=True).start()
        if config.outage_at:
            threading.Thread(target=store_outage, daemon=True).start()

        kinds = list(CLASSES)
        weights = [CLASSES[k][0] for k in kinds]
        per_wave = max(1, -(-config.jobs // config.waves))
        fine: list[str] = []
        made = 0
        while made < config.jobs:
            for _ in range(min(per_wave, config.jobs - made)):
                kind = rng.choices(kinds, weights)[0]
                job = emu.add_job(f"soak-{kind}-{made}", _script(kind), topic=TOPIC, notify=["JOB_FAILED"])
                result.expected[job] = CLASSES[kind][1]
                result.by_class[kind] = result.by_class.get(kind, 0) + 1
                if kind == "fine":
                    fine.append(job)
                made += 1
            say(f"[soak] {made}/{config.jobs} jobs started")
            time.sleep(config.wave_gap_s)

        forged: set[str] = set()
        complete_since: float | None = None
        deadline = started + config.max_seconds
        while time.time() < deadline:
            for job in fine:  # a forged (or stale) JOB_FAILED for a job that succeeded
                if job not in forged and emu.job(job)["state"] == "SUCCEED":
                    emu.publish(job, "JOB_FAILED", TOPIC)
                    forged.add(job)
            counts = emu.retry_counts()
            left = sum(1 for j, n in result.expected.items() if counts[j] < n)
            complete = (left == 0 and len(forged) == len(fine) and emu.fleet.running() == 0
                        and (not config.outage_at or len(outage) == 2))
            complete_since = (complete_since or time.time()) if complete else None
            # Done when the topic has nothing left to deliver, or 10 s after every retry due was
            # applied (redeliveries of pushes a draining instance held past the topic's timeout can
            # trickle on; the settle below still catches a late second retry).
            if complete_since and (emu.topics.idle() or time.time() - complete_since > 10):
                result.finished = True
                break
            say(f"[soak] {left} jobs still due a retry; {emu.fleet.running()} running; "
                f"{sum(emu.faults.injected.values())} faults so far")
            time.sleep(1.0)
        result.elapsed_s = time.time() - started
        # Settle: let every lease (a killed flusher's, an unclear answer's) run out, then sweep once
        # more with nothing killed, so a late second retry would show.
        stop.set()
        lease_s = max(3 * max(1.0, 5.0 / config.speedup) + 2, 60.0 / config.speedup)
        time.sleep(lease_s + 30.0 / config.speedup + 1.0)
        functions.sweep_once(seconds=10.0)
        emu.wait_idle(10)
    finally:
        stop.set()
        functions.stop()
        emu.stop()
        if redis_server is not None:
            redis_server.stop()

    result.counts = dict(emu.retry_counts())
    result.faults = dict(emu.faults.injected)
    result.api_calls = dict(collections.Counter(c["action"] for c in emu.calls))
    retry_calls = [c for c in emu.calls if c["action"] == "RetryJobs"]
    result.retry_calls = len(retry_calls)
    result.retry_applied_calls = sum(1 for c in retry_calls
                                     if c["error"] is None and c["fault"] in (None, "lost_answer"))
    first_retry: dict[str, float] = {}
    for c in retry_calls:
        if c["error"] is None and c["fault"] in (None, "lost_answer"):
            for job in (c["params"] or {}).get("JobIds") or ():
                first_retry[job] = min(first_retry.get(job, c["t"]), c["t"])
    result.first_retry_s = [t - failed_at[j] for j, t in first_retry.items() if j in failed_at]
    result.retry_refused_not_failed = sum(1 for c in retry_calls if c["error"] == "UnsupportedOperation")
    pushes = emu.pushes
    result.pushes = len(pushes)
    ok = [isinstance(p["status"], int) and 200 <= p["status"] < 300 for p in pushes]
    result.pushes_failed = ok.count(False)
    result.pushes_5xx = sum(1 for p in pushes if isinstance(p["status"], int) and p["status"] >= 500)
    if len(outage) == 2:
        down, up = outage
        during = [p for p in pushes if down <= p["t"] <= up + 1.0 and isinstance(p["status"], int)
                  and p["status"] >= 500]
        result.outage_pushes_5xx = len(during)
        later_ok = {(p["msg_id"], p["copy"]) for p, good in zip(pushes, ok, strict=True) if good}
        failed = {(p["msg_id"], p["copy"]) for p in during}
        result.outage_redelivered_ok = len(failed & later_ok)
        result.outage_lost = len(failed - later_ok)
    result.kills, result.restarts = functions.kills, functions.restarts
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--fault-rate", type=float, default=0.2, help="share of API calls given a fault")
    ap.add_argument("--fault-kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    ap.add_argument("--store", default="sqlite",
                    help="sqlite, redis (a server of its own on a free port) or a ledger URL")
    ap.add_argument("--processes", type=int, default=2, help="function processes sharing the ledger")
    ap.add_argument("--speedup", type=float, default=20.0, help="time scale of the emulator and function")
    ap.add_argument("--duplicates", type=int, default=1, help="extra copies of every push")
    ap.add_argument("--waves", type=int, default=30, help="jobs are started in this many waves")
    ap.add_argument("--sweep-every", type=float, default=2.0, help="real seconds between sweeps")
    ap.add_argument("--kill-every", type=float, default=0.0,
                    help="SIGKILL a random function process about this often (real seconds; 0: never)")
    ap.add_argument("--kill-on-retry", type=float, default=0.0,
                    help="chance that an applied RetryJobs kills a function process before its answer")
    ap.add_argument("--outage-at", type=float, default=0.0,
                    help="kill the Redis server this many seconds in (needs --store redis)")
    ap.add_argument("--outage-s", type=float, default=4.0, help="how long the store stays down")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the ledger and logs here")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    config = SoakConfig(jobs=args.jobs, fault_rate=args.fault_rate,
                        fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k), store=args.store,
                        processes=args.processes, speedup=args.speedup, duplicates=args.duplicates,
                        waves=args.waves, sweep_every=args.sweep_every, kill_every=args.kill_every,
                        kill_on_retry=args.kill_on_retry, outage_at=args.outage_at,
                        outage_s=args.outage_s if args.outage_at else 0.0, max_seconds=args.max_seconds,
                        seed=args.seed, workdir=args.workdir or Path(tempfile.gettempdir())
                        / f"soak-{uuid.uuid4().hex[:8]}", quiet=args.quiet)
    result = run_soak(config)
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
