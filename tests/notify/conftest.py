"""Give-up messages against the local receiver, on the ledger's real stores (SQLite and the Redis at
AUTORETRY_TEST_REDIS, each test under its own key prefix)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.receiver import Receiver
from handler.jobs import FailureKey
from handler.ledger import Store, open_store
from handler.notify import GiveUp

REDIS_URL = os.environ.get("AUTORETRY_TEST_REDIS", "redis://127.0.0.1:6379/0")
DINGTALK_SECRET = "SECdingtalk-test-secret-0123456789"
WEBHOOK_SECRET = "webhook-test-secret-9876543210"


# The ledger tests' clock (near the wall clock, as Redis expires records by it) and fixture.
from ..ledger.conftest import (  # noqa: E402, F401
    FakeClock,
    clock,
    delete_redis_prefix,
    redis_prefix,
)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL any thread or process can open."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    prefix = redis_prefix()
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        delete_redis_prefix(prefix)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with contextlib.closing(open_store(store_url)) as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(dingtalk_secret=DINGTALK_SECRET, webhook_secret=WEBHOOK_SECRET) as rx:
        yield rx


def failure(i: int, region: str = "ap-guangzhou") -> FailureKey:
    return FailureKey(region, f"job-{i:08d}", "2026-11-24T10:00:05Z")


def give_up(key: FailureKey, outcome: str = "max_attempts") -> GiveUp:
    return GiveUp.of(key, outcome=outcome, reason="max_attempts: attempts reached its cap of 3",
                     rule="everything-else", retries_spent=3, job_name=f"nightly-{key.job_id[-4:]}")
