"""What the Redis store adds to the contract: its key layout, TTLs, prefixes and URL forms."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from handler.ledger import Write, open_store
from handler.ledger.redis import RedisStore

from .conftest import REDIS_URL, delete_redis_prefix, redis_prefix


@pytest.fixture
def prefix() -> Iterator[str]:
    p = redis_prefix()
    yield p
    delete_redis_prefix(p)


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def test_records_are_hashes_under_the_prefix_expiring_with_the_record(
        prefix: str, raw: redis.Redis) -> None:
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    expires = time.time() + 3600
    store.commit([Write("f/r/job/t", {"state": "CLAIMED"}, 0, expires_at=expires),
                  Write("q/r/job", {"due_at": 5.0}, 0, due_at=5.0)])
    assert raw.type(f"{prefix}rec:f/r/job/t") == b"hash"
    assert raw.hget(f"{prefix}rec:f/r/job/t", "v") == b"1"
    assert 3590_000 < raw.pttl(f"{prefix}rec:f/r/job/t") <= 3600_000
    assert raw.pttl(f"{prefix}rec:q/r/job") == -1  # no expiry asked, none set
    assert raw.zrange(f"{prefix}due", 0, -1, withscores=True) == [(b"q/r/job", 5.0)]
    assert sorted(raw.scan_iter(match=prefix + "*")) == sorted(
        [f"{prefix}rec:f/r/job/t".encode(), f"{prefix}rec:q/r/job".encode(), f"{prefix}due".encode()])
    store.close()


def test_deleting_a_queue_record_removes_it_from_the_due_index(prefix: str, raw: redis.Redis) -> None:
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    store.commit([Write("q/a", {}, 0, due_at=1.0)])
    store.commit([Write("q/a", None, 1)])
    assert raw.exists(f"{prefix}rec:q/a", f"{prefix}due") == 0
    store.close()


def test_two_prefixes_on_one_server_are_two_ledgers(prefix: str) -> None:
    other = redis_prefix()
    a = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    b = RedisStore(f"{REDIS_URL}?prefix={other}")
    try:
        a.commit([Write("q/a", {"n": 1}, 0, due_at=1.0)])
        assert b.get(["q/a"]) == {}
        assert b.due(10.0, 10) == []
        assert b.commit([Write("q/a", {"n": 2}, 0, due_at=1.0)])
        assert a.get(["q/a"])["q/a"].value == {"n": 1}
    finally:
        a.close()
        b.close()
        delete_redis_prefix(other)


def test_due_drops_index_entries_whose_record_redis_expired(prefix: str, raw: redis.Redis) -> None:
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    store.commit([Write("q/early", {}, 0, due_at=1.0, expires_at=time.time() + 0.2),
                  Write("q/later", {}, 0, due_at=2.0)])
    time.sleep(0.3)
    # the expired entry must not hide the live one behind it, even with a limit of one
    assert store.due(10.0, 1) == ["q/later"]
    assert raw.zrange(f"{prefix}due", 0, -1) == [b"q/later"]
    store.close()


def test_url_gives_database_prefix_and_a_name_without_the_password() -> None:
    store = open_store("redis://:s3cret@127.0.0.1:6380/3?prefix=team-a:")
    assert isinstance(store, RedisStore)
    assert store.name == "redis://127.0.0.1:6380/3"
    assert store.prefix == "team-a:"
    kwargs = store._client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "s3cret", 2.0)
    store.close()


def test_rediss_url_speaks_tls() -> None:
    store = RedisStore("rediss://cache.example:6379/0")
    assert store.name == "rediss://cache.example:6379/0"
    assert store.prefix == "autoretry:"
    assert store._client.connection_pool.connection_class.__name__ == "SSLConnection"
    store.close()


def test_url_path_must_be_a_database_number() -> None:
    with pytest.raises(ValueError, match="database number"):
        RedisStore("redis://127.0.0.1:6379/ledger")
