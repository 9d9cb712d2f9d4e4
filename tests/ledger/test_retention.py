"""Retention: every record of a failure or a job expires AUTORETRY_RETENTION_HOURS after its last
write, by each store's own means (SQLite: a periodic DELETE; Redis: PEXPIREAT; DynamoDB: the TTL
attribute `expires_at`); queue entries never expire (they leave when handled)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator

import pytest
import redis

from handler import app
from handler.config import Config, ConfigError
from handler.jobs import FailureKey, JobRef
from handler.ledger import Write
from handler.ledger.sqlite import SqliteStore
from handler.policy import Action, RetryDecision

from .conftest import REDIS_URL, SharedStore, delete_redis_prefix, redis_prefix

HOURS = 30
KEY = FailureKey("ap-guangzhou", "job-aaaaaaaa", "2026-01-01T00:00:00Z")


@pytest.fixture
def written(shared_store: SharedStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """The function's ledger (built from the environment) after one failure retried and one job
    queued; yields when that was written."""
    monkeypatch.setenv("AUTORETRY_STORE", shared_store.url)
    monkeypatch.setenv("AUTORETRY_RETENTION_HOURS", str(HOURS))
    app.reset_runtime()
    ledger = app.runtime().ledger
    now = time.time()
    ledger.claim(KEY, RetryDecision(Action.RETRY, "default", "retry 1 of 3"), 60)
    ledger.record_retried(KEY)
    ledger.enqueue(JobRef("ap-guangzhou", "job-bbbbbbbb"))
    yield now
    app.reset_runtime()


def _expiries(backend: str, url: str) -> dict[str, float | None]:
    """Each record's expiry as the backend itself holds it (not as the ledger reads it back)."""
    keys = [f"f/{KEY}", f"j/{KEY.job}", "q/ap-guangzhou/job-bbbbbbbb"]
    if backend == "sqlite":
        with sqlite3.connect(url[len("sqlite:///"):]) as db:
            rows = db.execute("SELECT key, expires_at FROM records").fetchall()
        return {k: e for k, e in rows if k in keys}
    if backend == "redis":
        prefix = url.split("prefix=", 1)[1]
        client = redis.Redis.from_url(REDIS_URL)
        try:
            out: dict[str, float | None] = {}
            for k in keys:
                ms = client.pexpiretime(f"{prefix}rec:{k}")
                assert ms != -2, f"{k} missing"
                out[k] = None if ms == -1 else ms / 1000
            return out
        finally:
            client.close()
    import boto3

    db = boto3.client("dynamodb")
    table = url[len("dynamodb://"):]
    ttl = db.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    items = {k: db.get_item(TableName=table, Key={"pk": {"S": k}})["Item"] for k in keys}
    return {k: float(i["expires_at"]["N"]) if "expires_at" in i else None for k, i in items.items()}


def test_failure_and_job_records_expire_after_the_retention_hours_and_queue_entries_never(
        written: float, shared_store: SharedStore) -> None:
    expiry = _expiries(shared_store.backend, shared_store.url)
    for key in (f"f/{KEY}", f"j/{KEY.job}"):
        got = expiry[key]
        assert got is not None, key
        assert written + HOURS * 3600 - 1 <= got <= time.time() + HOURS * 3600 + 1, key
    assert expiry["q/ap-guangzhou/job-bbbbbbbb"] is None


def test_sqlite_deletes_expired_records_now_and_then(tmp_path: os.PathLike[str]) -> None:
    path = f"{tmp_path}/ledger.db"
    store = SqliteStore(path)
    store.commit([Write("f/old", {"s": 1}, 0, expires_at=time.time() - 1),
                  Write("f/live", {"s": 1}, 0, expires_at=time.time() + 3600),
                  Write("q/job", {"s": 1}, 0, due_at=1.0)])
    with sqlite3.connect(path) as db:  # the first commit of a process cleans up at once
        assert sorted(k for (k,) in db.execute("SELECT key FROM records")) == ["f/live", "q/job"]
    store.commit([Write("f/old", {"s": 1}, 0, expires_at=time.time() - 1)])
    with sqlite3.connect(path) as db:  # ...then at most once a minute, off the common path
        assert "f/old" in {k for (k,) in db.execute("SELECT key FROM records")}
    store.close()


def test_redis_drops_a_record_when_it_expires() -> None:
    from handler.ledger.redis import RedisStore

    prefix = redis_prefix()
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    try:
        store.commit([Write("f/soon", {"s": 1}, 0, expires_at=time.time() + 0.2)])
        assert "f/soon" in store.get(["f/soon"])
        time.sleep(0.4)
        assert store.get(["f/soon"]) == {}
    finally:
        store.close()
        delete_redis_prefix(prefix)


@pytest.mark.parametrize("hours", ["24", "0", "-1"])
def test_retention_shorter_than_a_day_of_redeliveries_is_refused(hours: str) -> None:
    with pytest.raises(ConfigError, match="AUTORETRY_RETENTION_HOURS"):
        Config.from_env({"AUTORETRY_RETENTION_HOURS": hours})
