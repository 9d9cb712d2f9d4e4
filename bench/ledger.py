"""Per-operation latency of each ledger backend, on loopback, one caller, one operation at a time.

    .venv/bin/python bench/ledger.py                       # every store, n=2000 (moto: n=300)
    .venv/bin/python bench/ledger.py --stores sqlite,redis -n 5000

Stores: SQLite on a file in a temporary directory (WAL, synchronous=NORMAL, as the function opens
it); the Redis at AUTORETRY_BENCH_REDIS (default redis://127.0.0.1:6379/0) under a fresh key
prefix, deleted afterwards; DynamoDB as moto in-process (no network, no real service: its figures
say what moto costs in CPU, not what DynamoDB answers in).

Operations are the ledger's, as the function calls them (`handler.ledger.Ledger`):
  enqueue     a notice for a job not yet queued (read, then a conditional write)
  take 1      lease the earliest due entry (due index, read, conditional write)
  take 100    lease 100 due entries at once, as one flush does (one commit of 100 writes)
  claim       claim a new failure: its record and the job's counter in one commit
  record      settle a claimed failure as retried
  token       take a RetryJobs token from the shared bucket (read, conditional write)
  claim 100 / settle 100
              a flush's ledger work for a batch of 100 jobs: claim each failure; then record each
              retried and finish its queue entry. `1by1` runs one step per job, as the ledger did
              before batching; `batch` runs the batch in one read and one commit (`Ledger.apply`)
ops/s is 1 / mean latency for one caller; `take 100` and the per-batch rows count one batch of 100
as one operation (up to 50 of them, each after 100 untimed enqueues).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency import Table, timed
from handler.jobs import FailureKey, JobRef
from handler.ledger import Ledger, Store, open_store
from handler.policy import Action, RetryDecision

REGION = "ap-guangzhou"
END = "2026-11-24T10:00:00Z"
DECISION = RetryDecision(Action.RETRY, "default", "retry 1 of 3")
REDIS_URL = os.environ.get("AUTORETRY_BENCH_REDIS", "redis://127.0.0.1:6379/0")
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
             "AWS_SESSION_TOKEN": "bench", "AWS_REGION": "us-east-1",
             "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def sqlite_store() -> Iterator[Store]:
    with (tempfile.TemporaryDirectory() as tmp,
          contextlib.closing(open_store(f"sqlite:///{tmp}/ledger.db")) as store):
        yield store


@contextlib.contextmanager
def redis_store() -> Iterator[Store]:
    import redis

    prefix = f"autoretry-bench:{uuid.uuid4().hex[:8]}:"
    store = open_store(f"{REDIS_URL}?prefix={prefix}")
    try:
        yield store
    finally:
        store.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        client.close()


@contextlib.contextmanager
def moto_store() -> Iterator[Store]:
    from moto import mock_aws

    from handler.ledger.dynamodb import create_table

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    with mock.patch.dict(os.environ, {**env, **DUMMY_AWS}, clear=True), mock_aws():
        create_table("autoretry-bench", region="us-east-1")
        with contextlib.closing(open_store("dynamodb://autoretry-bench?region=us-east-1")) as store:
            yield store


STORES: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager[Store]]]] = {
    "sqlite": ("sqlite (file)", sqlite_store),
    "redis": ("redis (loopback)", redis_store),
    "dynamodb": ("dynamodb (moto in-process)", moto_store),
}


def run(store: Store, n: int) -> dict[str, list[float]]:
    ledger = Ledger(store, owner="bench")
    jobs = [JobRef(REGION, f"job-{i:08d}") for i in range(n)]
    keys = [FailureKey(REGION, j.job_id, END) for j in jobs]
    out: dict[str, list[float]] = {}
    out["enqueue"] = [timed(partial(ledger.enqueue, j, event_name="JOB_FAILED")) for j in jobs]
    out["take 1"] = [timed(lambda: ledger.take(1, 600)) for _ in range(n)]
    out["take 100"] = []
    for r in range(max(1, min(50, n // 40))):
        for i in range(100):  # untimed: a hundred more due entries
            ledger.enqueue(JobRef(REGION, f"job-b{r:03d}{i:04d}"))
        out["take 100"].append(timed(lambda: ledger.take(100, 600)))
    for how in ("1by1", "batch"):
        out[f"claim 100 {how}"], out[f"settle 100 {how}"] = [], []
        for r in range(max(1, min(50, n // 40))):
            mark = "o" if how == "1by1" else "s"
            batch = [JobRef(REGION, f"job-{mark}{r:03d}{i:04d}") for i in range(100)]
            for j in batch:  # untimed: a hundred due entries, taken as a flush takes them
                ledger.enqueue(j)
            entries = {e.job: e for e in ledger.take(100, 600)}
            fkeys = [FailureKey(REGION, j.job_id, END) for j in batch]
            claims = [ledger.claim_step(k, DECISION, 600) for k in fkeys]
            settles = [s for k in fkeys for s in (ledger.retried_step(k),
                                                  ledger.finish_step(entries[k.job]))]
            apply = (lambda steps: [ledger.apply([s]) for s in steps]) if how == "1by1" \
                else ledger.apply
            out[f"claim 100 {how}"].append(timed(partial(apply, claims)))
            out[f"settle 100 {how}"].append(timed(partial(apply, settles)))
    out["claim"] = [timed(partial(ledger.claim, k, DECISION, 600)) for k in keys]
    out["record"] = [timed(partial(ledger.record_retried, k)) for k in keys]
    # an unlimited bucket: every take is granted, so this times one turn (a read and a write)
    token = partial(ledger.take_token, "RetryJobs", 1e9, window_s=1e-9, call_s=0.0)
    out["token"] = [timed(token) for _ in range(n)]
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stores", default="sqlite,redis,dynamodb")
    ap.add_argument("-n", type=int, default=2000, help="operations of each kind (moto: at most 300)")
    args = ap.parse_args(argv)
    table = Table("store", label_w=28, op_w=17, n_w=6, us_w=9, ops_w=8)
    print(table.header())
    for name in args.stores.split(","):
        label, factory = STORES[name]
        n = min(args.n, 300) if name == "dynamodb" else args.n
        with factory() as store:
            results = run(store, n)
        for op, lat in results.items():
            print(table.row(label, op, lat))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
