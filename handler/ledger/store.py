"""The few atomic primitives every ledger backend provides.

The ledger's rules (claims, leases, attempts, the due queue, token buckets) are written once in
`handler.ledger.ledger` on top of versioned records: read some records with their versions, then
write a set of them all-or-nothing on condition that none changed since. SQLite does this with an
immediate transaction, Redis with one Lua script, DynamoDB with TransactWriteItems.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Value = dict[str, Any]


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or answered with an error. The message names the store, never
    its credentials."""


@dataclass(frozen=True)
class Record:
    value: Value
    version: int
    expires_at: float | None = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class Write:
    """Set (or, with `value=None`, delete) one record, on condition that its version is still
    `expect` (0: the record must not exist). `due_at` indexes a queue record by its due time;
    `expires_at` lets the backend drop the record after retention."""

    key: str
    value: Value | None
    expect: int
    expires_at: float | None = None
    due_at: float | None = None


class Store(Protocol):
    # A name for logs and errors, without credentials, e.g. "redis://127.0.0.1:6379/0".
    name: str
    # A store that can commit only so many writes at once says so in `max_writes` (DynamoDB: 100);
    # the ledger then splits a batch of steps into commits that fit.
    # A store whose acknowledged writes can still be lost (Redis, replicated asynchronously)
    # provides `wait_durable(timeout_s: float) -> None`: return once every write made so far would
    # survive the loss of its primary, or raise StoreUnavailable. The ledger calls it between the
    # claims' commit and the RetryJobs they guard; a store without it has nothing to wait for.

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        """The records that exist among `keys` (expired ones included: the caller checks)."""
        ...

    def commit(self, writes: Sequence[Write]) -> bool:
        """Apply every write, or none if any record's version is not its `expect`. A written record's
        version becomes `expect + 1`."""
        ...

    def due(self, now: float, limit: int) -> list[str]:
        """Keys of queue records whose `due_at` <= now, earliest first."""
        ...

    def scan(self, prefix: str) -> Iterator[tuple[str, Record]]:
        """Every record whose key starts with `prefix` (for operators' views; not on hot paths)."""
        ...

    def close(self) -> None: ...
