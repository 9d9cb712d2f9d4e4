"""What operators read: jobs with their decisions, the queue, the failures (not on hot paths)."""

from __future__ import annotations

from collections.abc import Iterator

from handler.jobs import FailureKey, JobRef
from handler.ledger.records import QueueEntry, Records, job_key
from handler.ledger.store import Value


class Views(Records):
    def jobs(self) -> Iterator[Value]:
        now = self.clock()
        for _, rec in self.store.scan("j/"):
            if rec.live(now):
                yield rec.value

    def job(self, job: JobRef) -> Value | None:
        rec = self._live(self.store.get([job_key(job)]), job_key(job))
        return rec.value if rec else None

    def queue(self) -> Iterator[QueueEntry]:
        for _, rec in self.store.scan("q/"):
            yield QueueEntry.from_record(rec)

    def failures(self) -> Iterator[tuple[FailureKey, Value]]:
        now = self.clock()
        for k, rec in self.store.scan("f/"):
            if rec.live(now):
                yield FailureKey.parse(k[2:]), rec.value
