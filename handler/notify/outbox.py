"""The outbox: give-up messages kept in the ledger's store until every channel has taken them.

Records (under `n/`, beside the ledger's own; only the Store protocol's get / commit / scan):
- `n/m/<failure key>`: one message: its fields, `state` (pending, sent, expired), attempts, when it
  is next due, the lease of whoever is sending it, and the channels that already took it. Created
  once per failure, ever (within retention), so adding it again is a no-op.
- `n/i/<shard>`: a small index of the pending messages of one shard, `{failure key: due time}`.
  A message and its index entry are written in one commit, so the index never misses a pending
  message; a sender reads the few shard records (one `get`) instead of scanning the store. The
  shard is a stable hash of the failure key: concurrent adds contend on one shard in `shards`.

Why not the store's `due()` index: it belongs to the retry queue, whose takers would then meet
messages they cannot parse. Why leases: two deliverers may read the same due entry; only the one
whose compare-and-set on the message wins sends it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from handler.jobs import FailureKey
from handler.ledger.records import DEFAULT_RETENTION_S, Records, version_of
from handler.ledger.store import Record, Store, Write
from handler.notify.message import GiveUp

PREFIX = "n/"
DEFAULT_SHARDS = 16

PENDING, SENT, EXPIRED = "pending", "sent", "expired"

def message_key(key: str) -> str:
    return f"{PREFIX}m/{key}"


def shard_key(shard: int) -> str:
    return f"{PREFIX}i/{shard:02d}"


@dataclass
class Claimed:
    """A message this sender holds the lease on, as of `version`."""

    key: str
    message: GiveUp
    version: int
    value: dict[str, Any]
    done: list[str] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return int(self.value.get("attempts") or 0)

    @property
    def created_at(self) -> float:
        return float(self.value.get("created_at") or 0.0)

    @property
    def lease_until(self) -> float:
        return float(self.value.get("lease_until") or 0.0)

    @property
    def refusals(self) -> dict[str, int]:
        """Per channel, how many times it refused this message for good (a permanent error)."""
        return {str(k): int(v) for k, v in (self.value.get("refusals") or {}).items()}

    @property
    def abandoned(self) -> list[str]:
        return [str(c) for c in self.value.get("abandoned") or []]


class Outbox(Records):
    """On the ledger's store, with its compare-and-set loop (a record that keeps changing is a
    `Contention`, a store failure), clock and retention."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time,
                 retention_s: float = DEFAULT_RETENTION_S, *, shards: int = DEFAULT_SHARDS,
                 owner: str | None = None) -> None:
        super().__init__(store, clock=clock, retention_s=retention_s, owner=owner)
        self.shards = shards

    # ---- plumbing ---------------------------------------------------------------------------------

    def _shard_of(self, key: str) -> str:
        return shard_key(zlib.crc32(key.encode("utf-8")) % self.shards)

    def _index_write(self, recs: dict[str, Record], sk: str, key: str, due_at: float | None) -> Write:
        """The shard record with `key` set to `due_at` (None: removed)."""
        live = self._live(recs, sk)
        entries = dict(live.value.get("due", {})) if live else {}
        if due_at is None:
            entries.pop(key, None)
        else:
            entries[key] = due_at
        return Write(sk, {"due": entries}, version_of(recs, sk), expires_at=self._expires())

    # ---- the retrier's side -----------------------------------------------------------------------

    def add(self, key: FailureKey, message: GiveUp) -> bool:
        """Keep `message` for sending; durable when this returns. False if this failure already has
        a message (pending, sent or expired): a failure is announced once."""
        fk = str(key)
        mk, sk = message_key(fk), self._shard_of(fk)

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            if self._live(recs, mk) is not None:
                return [], False
            now = self.clock()
            value = {"message": message.value(), "state": PENDING, "created_at": now,
                     "attempts": 0, "next_at": now, "owner": None, "lease_until": 0.0, "done": []}
            return [Write(mk, value, version_of(recs, mk), expires_at=self._expires()),
                    self._index_write(recs, sk, fk, now)], True

        added: bool = self._cas([mk, sk], change)
        return added

    # ---- the sender's side ------------------------------------------------------------------------

    def due(self, limit: int) -> list[str]:
        """Failure keys of pending messages due now, earliest first (one read of the index)."""
        now = self.clock()
        recs = self.store.get([shard_key(i) for i in range(self.shards)])
        entries: list[tuple[float, str]] = []
        for rec in recs.values():
            if rec.live(now):
                entries += [(float(at), k) for k, at in rec.value.get("due", {}).items() if float(at) <= now]
        entries.sort()
        return [k for _, k in entries[:max(0, limit)]]

    def pending(self) -> int:
        """How many messages wait to be sent."""
        now = self.clock()
        recs = self.store.get([shard_key(i) for i in range(self.shards)])
        return sum(len(rec.value.get("due", {})) for rec in recs.values() if rec.live(now))

    def claim(self, key: str, lease_s: float) -> Claimed | None:
        """Lease a due message for sending; None if it is not due, not pending, or leased by someone
        else. An index entry whose message is gone or settled is dropped on the way."""
        mk, sk = message_key(key), self._shard_of(key)
        now = self.clock()
        rec = self._live(self.store.get([mk]), mk)
        if rec is None or rec.value.get("state") != PENDING:
            self._cas([mk, sk], lambda recs: self._drop_stale(recs, mk, sk, key))
            return None
        v = rec.value
        if float(v.get("next_at") or 0.0) > now or float(v.get("lease_until") or 0.0) > now:
            return None
        value = dict(v, owner=self.owner, lease_until=now + lease_s)
        if not self.store.commit([Write(mk, value, rec.version, expires_at=self._expires())]):
            return None  # another sender took it first
        return Claimed(key, GiveUp.from_value(v["message"]), rec.version + 1, value,
                       [str(c) for c in v.get("done") or []])

    def _drop_stale(self, recs: dict[str, Record], mk: str, sk: str, key: str
                    ) -> tuple[list[Write], None]:
        m = self._live(recs, mk)
        shard = self._live(recs, sk)
        if (m is not None and m.value.get("state") == PENDING) or shard is None \
                or key not in shard.value.get("due", {}):
            return [], None
        return [self._index_write(recs, sk, key, None)], None

    def _update(self, claimed: Claimed, changes: dict[str, Any], due_at: float | None,
                index: bool) -> bool:
        """Write `changes` to a message we hold, and (with `index`) its index entry, atomically.
        False if we no longer hold it (our lease ran out and someone else took it)."""
        mk, sk = message_key(claimed.key), self._shard_of(claimed.key)

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            rec = recs.get(mk)
            if rec is None or rec.version != claimed.version:
                return [], False
            value = dict(claimed.value, **changes)
            writes = [Write(mk, value, rec.version, expires_at=self._expires())]
            if index:
                writes.append(self._index_write(recs, sk, claimed.key, due_at))
            return writes, True

        ok: bool = self._cas([mk, sk] if index else [mk], change)
        if ok:
            claimed.version += 1
            claimed.value = dict(claimed.value, **changes)
        return ok

    def mark_done(self, claimed: Claimed, channel: str) -> bool:
        """`channel` took the message: never send it there again, whatever happens next."""
        claimed.done = [*claimed.done, channel]
        return self._update(claimed, {"done": claimed.done}, None, index=False)

    def mark_sent(self, claimed: Claimed, abandoned: Sequence[str] = ()) -> bool:
        now = self.clock()
        return self._update(claimed, {"state": SENT, "done": claimed.done, "sent_at": now,
                                      "owner": None, "lease_until": 0.0,
                                      "abandoned": list(abandoned)}, None, index=True)

    def reschedule(self, claimed: Claimed, due_at: float, error: str,
                   refusals: dict[str, int], abandoned: Sequence[str]) -> bool:
        return self._update(claimed, {"next_at": due_at, "attempts": claimed.attempts + 1,
                                      "owner": None, "lease_until": 0.0, "done": claimed.done,
                                      "last_error": error, "refusals": refusals,
                                      "abandoned": list(abandoned)}, due_at, index=True)

    def release(self, claimed: Claimed) -> bool:
        """Give a message back unsent and due now (we ran out of time before trying it)."""
        return self._update(claimed, {"owner": None, "lease_until": 0.0, "done": claimed.done},
                            None, index=False)

    def expire(self, claimed: Claimed, error: str) -> bool:
        return self._update(claimed, {"state": EXPIRED, "owner": None, "lease_until": 0.0,
                                      "done": claimed.done, "last_error": error}, None, index=True)

    # ---- what operators see -----------------------------------------------------------------------

    def messages(self) -> Iterator[dict[str, Any]]:
        now = self.clock()
        for key, rec in self.store.scan(f"{PREFIX}m/"):
            if rec.live(now):
                yield {"failure_key": key[len(PREFIX) + 2:], **rec.value}

    def counts(self) -> dict[str, int]:
        """How many messages are in each state (pending, sent, expired), from one scan."""
        counts = dict.fromkeys((PENDING, SENT, EXPIRED), 0)
        for m in self.messages():
            state = str(m.get("state"))
            counts[state] = counts.get(state, 0) + 1
        return counts

    def of_job(self, region: str, job_id: str) -> list[dict[str, Any]]:
        """The messages of one job's failures, oldest first (a failure key starts region/job/)."""
        now = self.clock()
        found = [{"failure_key": key[len(PREFIX) + 2:], **rec.value}
                 for key, rec in self.store.scan(message_key(f"{region}/{job_id}/")) if rec.live(now)]
        return sorted(found, key=lambda m: float(m.get("created_at") or 0.0))

    def get(self, key: FailureKey | str) -> dict[str, Any] | None:
        mk = message_key(str(key))
        rec = self._live(self.store.get([mk]), mk)
        return dict(rec.value) if rec else None
