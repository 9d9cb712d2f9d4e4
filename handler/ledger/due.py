"""The due queue: jobs waiting to be verified, leased to one flusher at a time."""

from __future__ import annotations

from typing import Any

from handler.jobs import JobRef
from handler.ledger.records import QueueEntry, Records, Step, queue_key
from handler.ledger.store import Record, Write

# A due index that lags its table (DynamoDB's) shows a write within this long. The drainer allows
# this long for entries it was not told of by key (handler.retrier.Retrier.drain).
INDEX_LAG_S = 2.0
# How far down a lagging index `_due` reads past rows that are no longer due (the entries taken or
# deleted while it lagged: a few batches' worth) before it takes what it has.
_INDEX_READ_MAX = 2000


class DueQueue(Records):
    def enqueue(
        self,
        job: JobRef,
        *,
        event_name: str | None = None,
        event_vars: dict[str, str] | None = None,
        due_at: float | None = None,
        said: tuple[str, float | None] | None = None,
    ) -> None:
        """Record that `job` must be verified; durable when this returns. Idempotent: duplicates
        only count. An entry leased by a flusher keeps its lease but changes version, so that
        flusher knows a new notice came while it worked. `said`: the StateReason the notice gave
        and the EndTime (epoch seconds, or None) of the failure it named; the latest is kept."""
        now = self.clock()
        due = now if due_at is None else due_at
        qk = queue_key(job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(qk)
            if rec is None:
                entry = QueueEntry(job, 0, due, event_name=event_name, first_seen=now)
                entry.event_vars = dict(event_vars or {})
                entry.notices = 1
                if said is not None:
                    entry.said_reason, entry.said_end = said
                return [Write(qk, entry.value(), 0, due_at=due)], None
            entry = QueueEntry.from_record(rec)
            entry.notices += 1
            if event_name:
                entry.event_name = event_name
            if event_vars:
                entry.event_vars = dict(event_vars)
            if said is not None:
                entry.said_reason, entry.said_end = said
            if entry.lease_until <= now:
                entry.due_at = min(entry.due_at, due)
            return [Write(qk, entry.value(), rec.version, due_at=entry.due_at)], None

        self._cas([qk], change)

    def has_due(self, known: set[str] | None = None, untried: bool = False) -> bool:
        """Whether an entry is due now. With `untried`, only one no API failure has deferred (one
        whose call failed waits out its backoff, for a drainer or the timer)."""
        return bool(self._due(self.clock(), 1, known, untried))

    def next_due(self, within_s: float, known: set[str] | None = None) -> float | None:
        """When the earliest entry comes due, if that is within `within_s` from now."""
        due = self._due(self.clock() + within_s, 1, known)
        return float(next(iter(due.values())).value["due_at"]) if due else None

    def take(self, limit: int, lease_s: float, known: set[str] | None = None) -> list[QueueEntry]:
        """Lease up to `limit` due entries for this owner; no two flushers get the same entry.
        `known` (see `_due`) gains the keys taken: a notice that comes while they are leased
        makes them due again, and the caller then sees it without the index."""
        now = self.clock()
        due = self._due(now, limit, known)
        picked: list[tuple[QueueEntry, Write]] = []
        for k, rec in due.items():
            entry = QueueEntry.from_record(rec)
            entry.owner, entry.lease_until, entry.due_at = self.owner, now + lease_s, now + lease_s
            picked.append((entry, Write(k, entry.value(), rec.version, due_at=entry.due_at)))
        if not picked:
            return []
        if self.store.commit([w for _, w in picked]):
            taken = [e for e, _ in picked]
        else:  # another flusher raced us for some: take the rest one by one
            taken = [e for e, w in picked if self.store.commit([w])]
        for e in taken:
            e.version += 1
        if known is not None:
            known.update(queue_key(e.job) for e in taken)
        return taken

    def _due(self, now: float, limit: int, known: set[str] | None, untried: bool = False
             ) -> dict[str, Record]:
        """Up to `limit` entries due by `now`, earliest first, as read consistently: the due index
        finds them, and may lag the table (DynamoDB's), so it can miss a new entry and still list
        one that was deleted or leased. `known` holds keys the caller knows of without the index
        (those its invocation wrote, those knocked on the drainer's record, those it took); each
        is read too, and dropped once it is gone. Entries the index lists but the table no longer
        holds as due are skipped, and the index asked further, so they cost no API call and hide
        nothing behind them."""
        read = set(known or ())
        recs = self.store.get(list(read)) if read else {}
        if known is not None:
            known.intersection_update(k for k, rec in recs.items() if self._still_known(rec))
        ask = limit
        while True:
            listed = self.store.due(now, ask)
            unread = [k for k in listed if k not in read]
            read.update(unread)
            recs.update(self.store.get(unread) if unread else {})
            due = sorted(((k, r) for k, r in recs.items() if float(r.value["due_at"]) <= now
                          and not (untried and r.value.get("backoff_step"))),
                         key=lambda kr: float(kr[1].value["due_at"]))
            if len(due) >= limit or len(listed) < ask or ask >= _INDEX_READ_MAX:
                return dict(due[:limit])
            ask = min(ask * 4, _INDEX_READ_MAX)


    def _still_known(self, rec: Record) -> bool:
        """A known key is read again until its entry is gone, unless the entry comes due so late
        that the index shows it by then. An entry leased to this owner stays: finishing it may
        make it due at once (a notice came meanwhile)."""
        now, value = self.clock(), rec.value
        if value.get("owner") == self.owner and float(value.get("lease_until") or 0) > now:
            return True
        return float(value["due_at"]) <= now + INDEX_LAG_S

    def finish_step(self, entry: QueueEntry) -> Step:
        """Done with a taken entry. If a notice arrived meanwhile, the entry stays, due now."""
        qk = queue_key(entry.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(qk)
            if rec is None:
                return [], None
            if rec.version == entry.version:
                return [Write(qk, None, rec.version)], None
            return self._requeue_now(rec), None

        return Step((qk,), change, "finish", entry)

    def defer_step(self, entry: QueueEntry, due_at: float, **updates: Any) -> Step:
        """Give a taken entry back, due at `due_at`, with `updates` applied (e.g. backoff_step)."""
        qk = queue_key(entry.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(qk)
            if rec is None or rec.version != entry.version:
                # gone, or touched by a new notice: verify again soon rather than lose it
                return (self._requeue_now(rec) if rec is not None else []), None
            for name, value in updates.items():
                setattr(entry, name, value)
            entry.owner, entry.lease_until, entry.due_at = None, 0.0, due_at
            return [Write(qk, entry.value(), rec.version, due_at=due_at)], None

        return Step((qk,), change, "defer", entry)

    def finish(self, entry: QueueEntry) -> None:
        self.apply([self.finish_step(entry)])

    def defer(self, entry: QueueEntry, due_at: float, **updates: Any) -> None:
        self.apply([self.defer_step(entry, due_at, **updates)])

    def _requeue_now(self, rec: Record) -> list[Write]:
        fresh = QueueEntry.from_record(rec)
        now = self.clock()
        fresh.owner, fresh.lease_until, fresh.due_at = None, 0.0, now
        return [Write(queue_key(fresh.job), fresh.value(), rec.version, due_at=now)]
