"""The ledger: claims, attempts, the due queue and token buckets, on a store chosen by URL."""

from __future__ import annotations

from urllib.parse import urlparse

from handler.ledger.ledger import (
    ClaimOutcome,
    FailureState,
    Ledger,
    Look,
    QueueEntry,
    Spend,
    Spent,
    Step,
    Token,
)
from handler.ledger.store import Record, Store, StoreUnavailable, Write

__all__ = [
    "ClaimOutcome",
    "FailureState",
    "Ledger",
    "Look",
    "QueueEntry",
    "Record",
    "Spend",
    "Spent",
    "Step",
    "Store",
    "StoreUnavailable",
    "Token",
    "Write",
    "describe_store",
    "open_store",
]

def describe_store(url: str) -> str:
    """The store's URL without credentials, for logs and errors."""
    parsed = urlparse(url)
    if parsed.password or parsed.username:
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        return parsed._replace(netloc=f"***@{host}{port}").geturl()
    return url


def open_store(url: str) -> Store:
    """`sqlite:///path`, `redis://[:password@]host:port/db[?prefix=autoretry:]` (`rediss://` for
    TLS), `dynamodb://table[?region=...]`. Each backend's client library is imported only when
    that backend is chosen."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        path = url[len("sqlite://"):]
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ValueError("AUTORETRY_STORE: sqlite URL needs a path, e.g. sqlite:///var/autoretry.db")
        from handler.ledger.sqlite import SqliteStore

        return SqliteStore(path)
    if scheme in ("redis", "rediss"):
        from handler.ledger.redis import RedisStore

        return RedisStore(url)
    if scheme == "dynamodb":
        from handler.ledger.dynamodb import DynamoStore

        return DynamoStore(url)
    raise ValueError(
        f"AUTORETRY_STORE: unknown store {describe_store(url)!r}; use sqlite:///path, "
        "redis://host:port/db or dynamodb://table"
    )
