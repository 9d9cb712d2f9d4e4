"""The emulator's world can make the function's ledger forget on command: every record the real
store wrote is gone afterwards, and nothing outside the ledger is touched."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.forget import drop_ledger
from handler.ledger.redis import RedisStore
from handler.ledger.sqlite import SqliteStore
from handler.ledger.store import Write

REDIS_URL = os.environ.get("AUTORETRY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def fill(store: RedisStore | SqliteStore) -> None:
    """Records, some queued (Redis: the due index too), through the function's own store."""
    now = time.time()
    assert store.commit([Write(f"job:job-{i:08d}", {"spent": i}, 0, due_at=now + i if i % 2 else None)
                         for i in range(5)])
    assert len(list(store.scan(""))) == 5


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"autoretry-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_dropping_a_redis_ledger_empties_its_prefix_and_nothing_else(redis_prefix: str) -> None:
    import redis

    url = f"{REDIS_URL}?prefix={redis_prefix}"
    store = RedisStore(url)
    neighbour = RedisStore(f"{REDIS_URL}?prefix={redis_prefix[:-1]}-other:")
    try:
        fill(store)
        fill(neighbour)
        assert drop_ledger(url) == 6  # five records and the due index
        assert list(store.scan("")) == [] and store.due(time.time() + 60, 10) == []
        assert len(list(neighbour.scan(""))) == 5
    finally:
        store.close()
        neighbour.close()
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(*client.scan_iter(match=f"{redis_prefix[:-1]}-other:*"))
        client.close()


def test_dropping_a_redis_ledger_with_an_empty_prefix_is_refused() -> None:
    # A port nothing listens on: should the refusal ever regress, no real database is emptied.
    with pytest.raises(ValueError, match="empty prefix"):
        drop_ledger("redis://127.0.0.1:1/0?prefix=")


def test_dropping_a_sqlite_ledger_empties_its_tables_and_keeps_the_file_usable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SqliteStore(str(path))
    try:
        fill(store)
        assert drop_ledger(f"sqlite:///{path}") == 5  # an absolute path: sqlite:////tmp/...
        assert list(store.scan("")) == [] and store.due(time.time() + 60, 10) == []
        assert store.commit([Write("job:job-00000001", {"spent": 0}, 0)])  # version 0: a fresh start
    finally:
        store.close()
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert ("records",) in tables


def test_a_relative_sqlite_url_is_read_from_the_working_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteStore("var/ledger.db")
    try:
        fill(store)
        assert drop_ledger("sqlite:///var/ledger.db") == 5
        assert list(store.scan("")) == []
    finally:
        store.close()


def test_dropping_a_sqlite_ledger_that_does_not_exist_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        drop_ledger(f"sqlite:///{tmp_path}/missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_other_stores_are_refused() -> None:
    with pytest.raises(ValueError, match="dynamodb"):
        drop_ledger("dynamodb://table")
