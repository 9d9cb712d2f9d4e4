"""A store that cannot be reached fails fast, names itself, and never shows its credentials."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from handler.ledger import Store, StoreUnavailable, Write, open_store

from .conftest import REDIS_URL
from .servers import DUMMY_AWS_ENV

OPERATIONS: dict[str, Callable[[Store], object]] = {
    "get": lambda s: s.get(["q/x"]),
    "commit": lambda s: s.commit([Write("q/x", {}, 0, due_at=1.0)]),
    "due": lambda s: s.due(10.0, 10),
}


def _fails_closed(store: Store, operation: str) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        OPERATIONS[operation](store)
    assert time.monotonic() - started < 5.0
    return info.value


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_redis_on_a_closed_port_is_unavailable_fast_without_the_password(operation: str) -> None:
    store = open_store("redis://:s3cret@127.0.0.1:1/0")
    exc = _fails_closed(store, operation)
    assert "redis://127.0.0.1:1/0" in str(exc)
    assert "s3cret" not in str(exc)
    assert "s3cret" not in repr(exc.__cause__) and exc.__suppress_context__
    store.close()


def test_redis_refusing_the_credentials_is_unavailable_without_the_password() -> None:
    host = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    store = open_store(f"redis://nobody:s3cret-wrong@{host}/0")  # no such ACL user
    exc = _fails_closed(store, "get")
    assert f"redis://{host}/0" in str(exc)
    assert "s3cret" not in str(exc)
    store.close()


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_dynamodb_endpoint_refusing_is_unavailable_fast_naming_table_and_region(
        operation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret-key")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1")
    store = open_store("dynamodb://autoretry-ledger?region=ap-guangzhou")
    exc = _fails_closed(store, operation)
    assert "dynamodb://autoretry-ledger?region=ap-guangzhou" in str(exc)
    assert "s3cret" not in str(exc)
    store.close()
