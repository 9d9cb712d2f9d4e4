"""What the ledger must not forget: who it is, and a claim before the call it guards.

The identity record `i/ledger` is written once, when the ledger is set up, with a random id, and
never expires. A ledger that forgot (a Redis restarted without persistence, a failover to a copy
that lost it, a table recreated) no longer holds it, and nothing writes the same id again. The
deployment passes the id it expects (`AUTORETRY_LEDGER_ID`); a ledger missing it, or holding
another, would hand every job a fresh budget, so it retries nothing until an operator adopts it.

A claim checks the identity in the very read it decides on (see `apply`), and its store is asked
to make it durable (`wait_durable`) before RetryJobs is called.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from handler.ledger.claims import Claims
from handler.ledger.records import Step
from handler.ledger.store import Record, StoreUnavailable, Write

IDENTITY_KEY = "i/ledger"
LEDGER_ID_VARIABLE = "AUTORETRY_LEDGER_ID"
ADOPT_COMMAND = "python -m handler ledger init --adopt"
IDENTITY_CACHE_S = 30.0
DURABLE_TIMEOUT_S = 1.0


class LedgerForgot(StoreUnavailable):
    """The ledger is not the one the deployment expects: it lost its identity record, so it may
    have lost claims and retries spent too. Like any store failure it fails closed."""

    metric = "ledger.forgot"


def _id_of(rec: Record | None) -> str | None:
    found = rec.value.get("id") if rec is not None else None
    return found if isinstance(found, str) and found else None


class Identity(Claims):
    # Set by check_identity: the id every claim must find, or None (no AUTORETRY_LEDGER_ID).
    _expected_identity: str | None = None
    _identity_seen: str | None = None
    _identity_seen_at: float = float("-inf")
    identity_cache_s: float = IDENTITY_CACHE_S

    def identity(self) -> str | None:
        """The ledger's identity, or None if it has no identity record."""
        return _id_of(self.store.get([IDENTITY_KEY]).get(IDENTITY_KEY))

    def init_identity(self, adopt: bool = False, expected: str | None = None) -> str:
        """The ledger's identity, created (a fresh random id) if it has none.

        A ledger that holds an identity keeps it: this returns it, with or without `adopt`.
        A ledger without one gets a new one, unless `expected` names the identity it should have
        had: then it forgot, and only `adopt` (the operator accepting this ledger as it is, with
        whatever it lost) writes a new identity; without it this raises LedgerForgot. Concurrent
        calls agree on one identity."""
        now = self.clock()

        def change(recs: dict[str, Record]) -> tuple[list[Write], str]:
            rec = recs.get(IDENTITY_KEY)
            found = _id_of(rec)
            if found is not None:
                return [], found
            if expected is not None and not adopt:
                raise self._forgot(None, expected)
            new = uuid.uuid4().hex
            value = {"id": new, "created_at": now, "adopted": adopt}
            # An unreadable record is replaced by its version; an absent one is created.
            return [Write(IDENTITY_KEY, value, rec.version if rec is not None else 0)], new

        created: str = self._cas([IDENTITY_KEY], change)
        return created

    def check_identity(self, expected: str | None) -> None:
        """Raise LedgerForgot unless the ledger's identity is `expected`. With None (no
        AUTORETRY_LEDGER_ID: local runs, the demo) the ledger initialises itself if needed.

        Also arms every later claim of this instance with the same check, made in the claim's own
        read, so a wipe is caught before any RetryJobs even while a positive answer here is
        cached (for `identity_cache_s`, to spare a read per invocation)."""
        self._expected_identity = expected
        fresh = time.monotonic() - self._identity_seen_at < self.identity_cache_s
        if fresh and (expected is None or self._identity_seen == expected):
            return
        self._identity_seen_at = float("-inf")
        if expected is None:
            found = self.init_identity()
        else:
            found = expected
            if (held := self.identity()) != expected:
                raise self._forgot(held, expected)
        self._identity_seen, self._identity_seen_at = found, time.monotonic()

    def apply(self, steps: Sequence[Step]) -> list[Any]:
        """Steps as `Records.apply` runs them; a batch holding a claim is guarded by the identity.

        The guard is one more step, last: its record is read after every record the claims
        decide on (in the same read: one SQLite statement, or one Redis pipeline, run in order),
        and it raises before anything is committed. Where the claims are committed apart from it
        (a batch split to fit a store's `max_writes`, or steps run again one at a time after a
        conflict) it reads after their commit, still before this returns, so before any RetryJobs.
        The identity is never written again with the same id, so finding it proves that the
        ledger had forgotten nothing when the claims' records were read."""
        expected = self._expected_identity
        if expected is None or not any(s.name == "claim" for s in steps):
            return super().apply(steps)
        return super().apply([*steps, self._identity_guard(expected)])[:-1]

    def _identity_guard(self, expected: str) -> Step:
        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            found = _id_of(recs.get(IDENTITY_KEY))
            if found != expected:
                self._identity_seen_at = float("-inf")
                raise self._forgot(found, expected)
            return [], None

        return Step((IDENTITY_KEY,), change, "identity")

    def _forgot(self, found: str | None, expected: str) -> LedgerForgot:
        what = ("has no identity record" if found is None
                else f"is ledger {found}, not {expected}")
        return LedgerForgot(
            f"{self.store.name} {what} ({LEDGER_ID_VARIABLE}={expected}): it was emptied or "
            "replaced, and may have lost claims and retries spent, so nothing is retried. To accept "
            f"this ledger as it is, run `{ADOPT_COMMAND}` and set {LEDGER_ID_VARIABLE} to the "
            "identity it prints.")

    def wait_durable(self, timeout_s: float = DURABLE_TIMEOUT_S) -> None:
        """Return once the writes made so far (the claims) would survive the loss of the store's
        primary; raise StoreUnavailable if that is not known within `timeout_s`: the claims then
        stay held until their lease ends, and whoever takes them over re-reads the job. Stores
        whose writes are durable when acknowledged (SQLite, DynamoDB) have nothing to wait for."""
        wait = getattr(self.store, "wait_durable", None)
        if wait is not None:
            wait(timeout_s)
