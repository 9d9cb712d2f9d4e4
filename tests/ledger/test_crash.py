"""Flushers killed with SIGKILL between claiming failures and calling RetryJobs, between the call and
recording it, part way through recording, at a random step and at a random moment, then a flusher
that runs to the end: every failure is retried exactly once at the API, none twice, none lost, on
every store.

Each flusher is a spawned process running the function's own Retrier (`app.runtime()`, the real
gateway and SDK) against the emulator, draining the shared queue. It dies by its own SIGKILL at the
planned step (see `workers._crash_points`) or by the parent's at a random moment. Failures arrive
in waves, one per flusher, so each dies holding fresh work; the last one waits out the dead ones'
leases (as a later invocation or the timer does), re-reads each job and finishes what they left.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from emulator import Emulator, Outcome
from handler import app
from handler.config import Config
from handler.jobs import FailureKey, JobRef
from handler.ledger import FailureState, Ledger, open_store

from .conftest import SharedStore, function_env
from .workers import REGION, FlusherPlan, flusher_process

WAVE = 12  # failures enqueued for each flusher


def _lease_s(env: dict[str, str]) -> float:
    """The function's own lease for these settings (5 s at speedup 20)."""
    return app.build_runtime(Config.from_env({**env, "AUTORETRY_STORE": "sqlite:///:memory:"})
                             ).settings.lease_s


def test_flushers_killed_between_claim_call_and_record_leave_every_failure_retried_once(
        shared_store: SharedStore, emulator: Emulator, tmp_path: Path) -> None:
    env = function_env(shared_store, emulator)
    lease_s = _lease_s(env)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # Each dies at a step of its first flush (a wave: WAVE claims, one call, WAVE records)...
    crashes: list[str | None] = [f"claim:{rng.randint(1, WAVE - 1)}", "call",
                                 f"record:{rng.randint(1, WAVE - 1)}",
                                 f"step:{rng.randint(1, 2 * WAVE + 1)}"]
    rng.shuffle(crashes)
    # ...then one is killed from outside at a random moment, then one finishes.
    plan: list[tuple[str | None, float]] = [(c, 0.0) for c in crashes]
    plan += [(None, lease_s + 2), (None, lease_s + 2)]
    steps = tmp_path / "steps.log"
    ctx = multiprocessing.get_context("spawn")

    def spawn(n: int) -> tuple[Any, Any, Any]:
        ready, go = ctx.Event(), ctx.Event()
        crash_at, linger = plan[n]
        proc = ctx.Process(target=flusher_process, args=(
            FlusherPlan(env, str(tmp_path / f"flusher-{n}.log"), str(steps), crash_at, linger),
            ready, go))
        proc.start()
        return proc, ready, go

    store = open_store(shared_store.url)
    ledger = Ledger(store)
    keys: list[FailureKey] = []
    upcoming = spawn(0)
    for n, (crash_at, _) in enumerate(plan):
        proc, ready, go = upcoming
        assert ready.wait(60), f"flusher {n} never started"
        if n + 1 < len(plan):
            upcoming = spawn(n + 1)  # importing while this one works
        last = n == len(plan) - 1
        for i in range(0 if last else WAVE):
            job = emulator.add_failed_job(name=f"w{n}-{i}", script=[Outcome.succeed()])
            keys.append(FailureKey(REGION, job, emulator.job(job)["end_time"]))
            ledger.enqueue(JobRef(REGION, job), event_name="JOB_FAILED")  # what a notice does
        go.set()
        if crash_at is None and not last:
            time.sleep(rng.uniform(0.0, 0.4))  # a flush of one wave takes ~0.1-0.3 s
            proc.kill()
        proc.join(60)
        assert proc.exitcode == (0 if last else -signal.SIGKILL), (n, crash_at, proc.exitcode)

    lines = steps.read_text().splitlines()
    died = [line.split()[1] for line in lines if line.startswith("died ")]
    assert died == crashes, f"seed {seed}: {lines}"
    jobs = [k.job_id for k in keys]
    # Every failure retried, none twice: counted at the API.
    entries = Counter(j for c in emulator.calls if c["action"] == "RetryJobs" and c["error"] is None
                      for j in c["params"]["JobIds"])
    assert entries == Counter(dict.fromkeys(jobs, 1)), f"seed {seed}: {lines}"
    assert {j: emulator.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)
    assert {c["error"] for c in emulator.calls} <= {None, "RequestLimitExceeded"}
    # The dead flushers' work was finished by re-reading, not by guessing:
    seen = Counter(line.split()[0] for line in lines)
    assert seen["taken_over"] >= 1, lines  # claimed, never called: the claim was taken over
    assert seen["confirmed"] >= 1, lines  # called, never recorded: the job had left the failure
    for key in keys:
        assert ledger.state(key) == (FailureState.RETRIED, 0.0), key
        assert ledger.history(key.job).spent() == 1, key
        assert ledger.pending(key.job) == [], key
    assert list(ledger.queue()) == []
    store.close()
