"""The due queue: jobs waiting to be verified, leased to one flusher at a time."""

from __future__ import annotations

from typing import Any

from handler.jobs import JobRef
from handler.ledger.records import QueueEntry, Records, Step, queue_key
from handler.ledger.store import Record, Write


class DueQueue(Records):
    def enqueue(
        self,
        job: JobRef,
        *,
        event_name: str | None = None,
        event_vars: dict[str, str] | None = None,
        due_at: float | None = None,
    ) -> None:
        """Record that `job` must be verified; durable when this returns. Idempotent: duplicates
        only count. An entry leased by a flusher keeps its lease but changes version, so that
        flusher knows a new notice came while it worked."""
        now = self.clock()
        due = now if due_at is None else due_at
        qk = queue_key(job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(qk)
            if rec is None:
                entry = QueueEntry(job, 0, due, event_name=event_name, first_seen=now)
                entry.event_vars = dict(event_vars or {})
                entry.notices = 1
                return [Write(qk, entry.value(), 0, due_at=due)], None
            entry = QueueEntry.from_record(rec)
            entry.notices += 1
            if event_name:
                entry.event_name = event_name
            if event_vars:
                entry.event_vars = dict(event_vars)
            if entry.lease_until <= now:
                entry.due_at = min(entry.due_at, due)
            return [Write(qk, entry.value(), rec.version, due_at=entry.due_at)], None

        self._cas([qk], change)

    def has_due(self) -> bool:
        return bool(self.store.due(self.clock(), 1))

    def next_due(self, within_s: float) -> float | None:
        """When the earliest entry comes due, if that is within `within_s` from now."""
        keys = self.store.due(self.clock() + within_s, 1)
        rec = self.store.get(keys).get(keys[0]) if keys else None
        return float(rec.value["due_at"]) if rec is not None else None

    def take(self, limit: int, lease_s: float) -> list[QueueEntry]:
        """Lease up to `limit` due entries for this owner; no two flushers get the same entry."""
        now = self.clock()
        keys = self.store.due(now, limit)
        if not keys:
            return []
        recs = self.store.get(keys)
        picked: list[tuple[QueueEntry, Write]] = []
        for k in keys:
            rec = recs.get(k)
            if rec is None:
                continue
            entry = QueueEntry.from_record(rec)
            if entry.due_at > now:
                continue
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
        return taken

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
