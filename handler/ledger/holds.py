"""The operator's holds: a job held is never retried until it is released (see `Claims.claim_step`,
which reads the hold in the claim's own read)."""

from __future__ import annotations

from handler.jobs import JobRef
from handler.ledger.records import Hold, Records, hold_key
from handler.ledger.store import Record, Write


class Holds(Records):
    def hold_job(self, job: JobRef, reason: str, command: str = "hold") -> tuple[Hold, Hold | None]:
        """Hold `job` with `reason`; returns the hold and the one it replaced, if the job was held
        already (the new reason replaces the old; the hold keeps its first `since`). The record
        never expires: it lasts until `release_job`."""
        hk = hold_key(job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], tuple[Hold, Hold | None]]:
            rec = self._live(recs, hk)
            before = Hold.from_value(job, rec.value) if rec is not None else None
            hold = Hold(job, reason, before.since if before else self.clock(), command)
            return [Write(hk, hold.value(), rec.version if rec else 0)], (hold, before)

        result: tuple[Hold, Hold | None] = self._cas([hk], change)
        return result

    def release_job(self, job: JobRef) -> Hold | None:
        """Remove the hold on `job`; returns it, or None if the job was not held. Failures seen
        from now on are decided as if it had never been held."""
        hk = hold_key(job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], Hold | None]:
            rec = self._live(recs, hk)
            if rec is None:
                return [], None
            return [Write(hk, None, rec.version)], Hold.from_value(job, rec.value)

        result: Hold | None = self._cas([hk], change)
        return result

    def hold_on(self, job: JobRef) -> Hold | None:
        """The operator's hold on `job`, if there is one."""
        rec = self._live(self.store.get([hold_key(job)]), hold_key(job))
        return Hold.from_value(job, rec.value) if rec is not None else None
