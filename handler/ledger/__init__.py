"""The ledger: claims, attempts, the due queue and token buckets, on a store chosen by URL."""

from __future__ import annotations

from typing import NamedTuple

from handler.ledger.ledger import (
    ClaimOutcome,
    FailureState,
    Hold,
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
    "Hold",
    "Ledger",
    "Look",
    "QueueEntry",
    "Record",
    "Spend",
    "Spent",
    "Step",
    "Store",
    "StoreUnavailable",
    "StoreUrl",
    "Token",
    "Write",
    "describe_store",
    "open_store",
    "split_store_url",
]

class StoreUrl(NamedTuple):
    """A store URL cut at its credentials. `userinfo` is what stood before the host's `@` (as
    written, still percent-encoded or not); `rest` is `host[:port][/path][?query]`."""

    scheme: str
    userinfo: str | None
    rest: str


def split_store_url(url: str) -> StoreUrl:
    """Cut at the last `@` before the host, so that a password holding an unencoded `/`, `#`, `?`
    or `@` stays whole (a URL parser would end the host at the first of them and show the rest of
    the password as a path, a fragment or a port)."""
    scheme, sep, after = url.partition("://")
    if not sep or scheme.lower() == "sqlite":  # a file path may hold an @ and has no credentials
        return StoreUrl(scheme if sep else "", None, after if sep else url)
    userinfo, at, rest = after.rpartition("@")
    if not at:
        return StoreUrl(scheme, None, after)
    return StoreUrl(scheme, userinfo, rest)


def describe_store(url: str) -> str:
    """The store's URL without credentials, for logs and errors. Never raises."""
    parts = split_store_url(url)
    if parts.userinfo is None:
        return url if parts.scheme or "@" not in url else "***"
    return f"{parts.scheme}://***@{parts.rest}"


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
