"""One contract suite for every store: each backend registers a factory in STORES.

Redis tests use the real server at AUTORETRY_TEST_REDIS (default redis://127.0.0.1:6379/0), each
under its own key prefix, deleted afterwards. DynamoDB tests use moto: in-process for one
process, its server on loopback when several processes share the store.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

from emulator import Emulator
from handler.ledger import Store
from handler.ledger.sqlite import SqliteStore

from .servers import DUMMY_AWS_ENV, SerializedMotoServer
from .workers import SECRET_ID, SECRET_KEY

REDIS_URL = os.environ.get("AUTORETRY_TEST_REDIS", "redis://127.0.0.1:6379/0")

StoreFactory = Callable[[Path], contextlib.AbstractContextManager[Store]]


def redis_prefix() -> str:
    return f"autoretry-test:{uuid.uuid4().hex[:10]}:"


def delete_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


@contextlib.contextmanager
def _sqlite(tmp: Path) -> Iterator[Store]:
    s = SqliteStore(str(tmp / f"ledger-{uuid.uuid4().hex[:6]}.db"))
    try:
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def _redis(tmp: Path) -> Iterator[Store]:
    from handler.ledger.redis import RedisStore

    prefix = redis_prefix()
    s = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    try:
        yield s
    finally:
        s.close()
        delete_redis_prefix(prefix)


@contextlib.contextmanager
def _dynamodb(tmp: Path) -> Iterator[Store]:
    from moto import mock_aws

    from handler.ledger.dynamodb import DynamoStore, create_table

    table = f"ledger-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    with mock.patch.dict(os.environ, {**env, **DUMMY_AWS_ENV}, clear=True), mock_aws():
        create_table(table, region="us-east-1")
        s = DynamoStore(f"dynamodb://{table}?region=us-east-1")
        try:
            yield s
        finally:
            s.close()


# name -> factory(tmp_path): a context giving a fresh, empty store
STORES: dict[str, StoreFactory] = {"sqlite": _sqlite, "redis": _redis, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with STORES[request.param](tmp_path) as s:
        yield s


class FakeClock:
    # Starts at the current minute: Redis and DynamoDB act on expiry times by the wall clock, so a
    # fake clock far from it would see records vanish (or never expire) behind its back.
    def __init__(self, start: float | None = None) -> None:
        self.now = start if start is not None else math.floor(time.time() / 60) * 60.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ---- one store shared by several processes ----------------------------------------------------


@dataclass
class SharedStore:
    """A store URL that any process can open, with the environment it needs (already applied to
    this process, and so inherited by spawned children)."""

    backend: str
    url: str
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[SerializedMotoServer]:
    server = SerializedMotoServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis", "dynamodb"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[SharedStore]:
    backend = request.param
    if backend == "sqlite":
        yield SharedStore(backend, f"sqlite:///{tmp_path / 'ledger.db'}")
    elif backend == "redis":
        prefix = redis_prefix()
        try:
            yield SharedStore(backend, f"{REDIS_URL}?prefix={prefix}")
        finally:
            delete_redis_prefix(prefix)
    else:
        from handler.ledger.dynamodb import create_table

        server: SerializedMotoServer = request.getfixturevalue("moto_server")
        env = server.env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        table = f"ledger-{uuid.uuid4().hex[:8]}"
        create_table(table)
        yield SharedStore(backend, f"dynamodb://{table}", env)


# ---- the function's instances in child processes, against the emulator ----------------------

SPEEDUP = 20.0  # the emulator's time scale: rate limits x20, job run times /20


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=SPEEDUP) as emu:
        yield emu


def function_env(shared: SharedStore, emu: Emulator) -> dict[str, str]:
    """The environment of a function instance on `shared`, calling the emulator (no token needed:
    local mode)."""
    return {"AUTORETRY_STORE": shared.url, "AUTORETRY_BATCH_ENDPOINT": emu.endpoint,
            "AUTORETRY_BATCH_PROTOCOL": "http", "AUTORETRY_API_SPEEDUP": f"{SPEEDUP:g}",
            "AUTORETRY_LOCAL": "true", "TENCENTCLOUD_SECRET_ID": SECRET_ID,
            "TENCENTCLOUD_SECRET_KEY": SECRET_KEY, **shared.env}
