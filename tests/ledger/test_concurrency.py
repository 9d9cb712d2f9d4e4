"""A fleet of function instances (processes of many threads) receiving every failure notice three
times, concurrently, on each store: the emulator sees exactly one RetryJobs job entry per failure,
and the shared token buckets never grant faster than the API's rate.

What runs is the function: `handler.app.main_handler` with API Gateway events carrying the TDMQ-CMQ
push envelope, in spawned processes that share nothing but the store URL; the Batch API is the
emulator (real SDK, signed requests) in this process, counting what it answered.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import time
from collections import Counter
from pathlib import Path
from typing import Any

from emulator import Emulator, Outcome
from handler.jobs import JobRef
from handler.ledger import ClaimOutcome, FailureState, Ledger, open_store

from ..pushes import failure_push
from .conftest import SPEEDUP, SharedStore, function_env
from .workers import (
    REGION,
    DeliveryPlan,
    DeliveryResult,
    delivery_process,
    failure,
    job_id,
    racing_claims_process,
)

PROCESSES = 4
THREADS = 8  # concurrent invocations per instance
DUPLICATES = 3
# DynamoDB runs on moto's server, which answers one request at a time, a few hundred a second and
# slower as the table grows: 150 failures take ~50 s on 2 cores. 60 failures (180 notices) keep its
# run near the others' ~20 s; the real stores take all 500.
FAILURES = {"sqlite": 500, "redis": 500, "dynamodb": 60}
# AUTORETRY_PROOF_FAILURES=500 runs every store at full size (DynamoDB on moto then takes minutes).
if os.environ.get("AUTORETRY_PROOF_FAILURES"):
    FAILURES = dict.fromkeys(FAILURES, int(os.environ["AUTORETRY_PROOF_FAILURES"]))
REPORT_TIMEOUT_S = 1800 if os.environ.get("AUTORETRY_PROOF_FAILURES") else 150


def _streams(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each failure's duplicates go to different instances, at about the same point of each
    instance's stream, so they race."""
    streams: list[list[dict[str, Any]]] = [[] for _ in range(PROCESSES)]
    for n, event in enumerate(events):
        for d in range(DUPLICATES):
            streams[(n + d) % PROCESSES].append(event)
    return streams


def _run_fleet(env: dict[str, str], events: list[dict[str, Any]], logs: Path) -> DeliveryResult:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    plans = [DeliveryPlan(env, str(logs / f"instance-{i}.log"), stream, THREADS)
             for i, stream in enumerate(_streams(events))]
    procs = [ctx.Process(target=delivery_process, args=(plan, i, barrier, results))
             for i, plan in enumerate(plans)]
    for p in procs:
        p.start()
    total = DeliveryResult()
    try:
        for _ in procs:
            r: DeliveryResult = results.get(timeout=REPORT_TIMEOUT_S)
            total.statuses.update(r.statuses)
            total.retried += r.retried
            total.errors += r.errors
            total.slowest_s = max(total.slowest_s, r.slowest_s)
            for action, grants in r.grants.items():
                total.grants.setdefault(action, []).extend(grants)
    except queue.Empty:
        raise AssertionError(f"an instance never reported back; see {logs}") from None
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return total


def _retry_entries(emu: Emulator) -> Counter[str]:
    """Job ids in the RetryJobs calls the emulator applied, one per entry."""
    return Counter(j for c in emu.calls if c["action"] == "RetryJobs" and c["error"] is None
                   for j in c["params"]["JobIds"])


def _min_gap(grants: list[float]) -> float:
    return min(b - a for a, b in itertools.pairwise(sorted(grants)))


def test_three_concurrent_copies_of_each_notice_across_instances_make_one_retry_entry_each(
        shared_store: SharedStore, emulator: Emulator, tmp_path: Path) -> None:
    n = FAILURES[shared_store.backend]
    jobs = [emulator.add_failed_job(name=f"j{i}", script=[Outcome.succeed()]) for i in range(n)]
    started = time.monotonic()
    result = _run_fleet(function_env(shared_store, emulator), [failure_push(emulator, j) for j in jobs],
                        tmp_path)
    took = time.monotonic() - started

    assert result.errors == []
    assert result.statuses == Counter({200: n * DUPLICATES})
    # Exactly one RetryJobs entry per failure at the API, and the service applied each once.
    entries = _retry_entries(emulator)
    assert entries == Counter(dict.fromkeys(jobs, 1)), f"{sum(entries.values())} entries for {n} jobs"
    assert {j: emulator.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)
    # Each retry was reported by exactly the invocation that made it.
    assert Counter(result.retried) == Counter(dict.fromkeys(jobs, 1))
    # Group commit: calls carry several jobs (how many depends on the store's speed).
    retry_calls = emulator.count("RetryJobs")
    assert retry_calls < n, f"{retry_calls} RetryJobs calls for {n} failures"

    # The shared buckets never granted two turns of one action closer than 1/rate, across every
    # instance; and since a turn also waits for the call a window back to have its answer, the
    # API, which counts arrivals, never saw a call over its limit: no RequestLimitExceeded at all.
    interval = 1.0 / (2.0 * SPEEDUP)  # RetryJobs and DescribeJobs: 2 requests/s each, time-scaled
    for action in ("DescribeJobs", "RetryJobs"):
        grants = result.grants.get(action, [])
        assert len(grants) >= 2, action
        assert _min_gap(grants) >= interval - 1e-6, f"{action} granted {_min_gap(grants):.6f}s apart"
        assert len(grants) >= emulator.count(action)  # every call went through a grant
    errors = Counter(f"{c['action']}: {c['error']}" for c in emulator.calls if c["error"])
    assert errors == Counter(), errors

    ledger = Ledger(open_store(shared_store.url))
    failures = Counter((k.job_id, v["state"]) for k, v in ledger.failures())
    assert failures == Counter({(j, FailureState.RETRIED): 1 for j in jobs})
    for j in jobs:
        assert ledger.history(JobRef(REGION, j)).spent() == 1
    assert list(ledger.queue()) == []
    ledger.store.close()
    print(f"\n{shared_store.backend}: {n} failures x {DUPLICATES} notices, {PROCESSES}x{THREADS} "
          f"invocations at once: {took:.1f}s, {retry_calls} RetryJobs calls, "
          f"{emulator.count('DescribeJobs')} DescribeJobs, "
          f"slowest answer {result.slowest_s:.2f}s")


def test_the_same_claims_from_every_process_at_once_are_granted_once_each(
        shared_store: SharedStore) -> None:
    jobs = [job_id(n) for n in range(100 if shared_store.backend != "dynamodb" else 25)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=racing_claims_process,
                         args=(shared_store.url, jobs, THREADS, i, barrier, results))
             for i in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes: list[tuple[str, str]] = []
    errors: list[str] = []
    try:
        for _ in procs:
            got, errs = results.get(timeout=90)
            outcomes += got
            errors += errs
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()

    assert errors == []
    assert len(outcomes) == len(jobs) * PROCESSES * THREADS
    granted = Counter(job for job, outcome in outcomes if outcome == ClaimOutcome.CLAIMED.value)
    assert granted == Counter(jobs)  # each once, none twice, none missing
    assert {o for _, o in outcomes} == {ClaimOutcome.CLAIMED.value, ClaimOutcome.DUPLICATE.value}
    store = open_store(shared_store.url)
    ledger = Ledger(store)
    assert {ledger.history(JobRef(REGION, j)).spent() for j in jobs} == {1}
    assert all(ledger.state(failure(j)) is not None for j in jobs)
    store.close()
