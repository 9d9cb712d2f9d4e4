"""The sweep's memory: where each region's walk through the FAILED listing stopped, so a sweep on any
instance, cold or warm, continues there; and who walks it now, so one sweeper at a time does.

Record `s/<region>`: the offset of the next page, the sweeper holding the walk and its lease, when
the current pass from offset 0 began, passes completed, and what the pages showed of the listing's
order (never assumed: `ascending` holds only after a whole pass, every page read, listed EndTimes
oldest first).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from handler.ledger.records import Records, Step
from handler.ledger.store import Record, Value, Write

CURSOR_KEEP_S = 7 * 86400.0  # a cursor untouched this long is dropped; the next sweep starts at 0


def cursor_key(region: str) -> str:
    return f"s/{region}"


@dataclass(frozen=True)
class SweepCursor:
    region: str
    offset: int = 0
    owner: str | None = None
    lease_until: float = 0.0
    pass_started_at: float = 0.0
    passes: int = 0
    last_pass_s: float | None = None
    # What the pages of a whole pass showed: every page listed EndTimes oldest first (and each
    # page began no earlier than the one before ended). Only then is the listing's end looked at.
    ascending: bool = False
    ascending_so_far: bool = True  # this pass, so far

    def value(self) -> Value:
        return {"region": self.region, "offset": self.offset, "owner": self.owner,
                "lease_until": self.lease_until, "pass_started_at": self.pass_started_at,
                "passes": self.passes, "last_pass_s": self.last_pass_s,
                "ascending": self.ascending, "ascending_so_far": self.ascending_so_far}

    @classmethod
    def from_value(cls, region: str, v: Value) -> SweepCursor:
        last = v.get("last_pass_s")
        return cls(region=region, offset=max(0, int(v.get("offset") or 0)), owner=v.get("owner"),
                   lease_until=float(v.get("lease_until") or 0.0),
                   pass_started_at=float(v.get("pass_started_at") or 0.0),
                   passes=int(v.get("passes") or 0),
                   last_pass_s=float(last) if last is not None else None,
                   ascending=bool(v.get("ascending")),
                   ascending_so_far=bool(v.get("ascending_so_far", True)))


class Cursors(Records):
    def sweep_cursor(self, region: str) -> SweepCursor:
        """The region's cursor as it stands (for operators and tests; no lease taken)."""
        rec = self._live(self.store.get([cursor_key(region)]), cursor_key(region))
        return SweepCursor.from_value(region, rec.value) if rec else SweepCursor(region)

    def take_walk(self, region: str, lease_s: float) -> SweepCursor | None:
        """Hold the region's walk for `lease_s` unless another sweeper holds it; the cursor where
        the last walk stopped, or None if the walk is taken."""
        result: SweepCursor | None = self.apply([self.take_walk_step(region, lease_s)])[0]
        return result

    def move_walk(self, cursor: SweepCursor, lease_s: float) -> bool:
        """Save where the walk is and hold it `lease_s` longer; False if it is no longer ours (our
        lease ran out and another sweeper took it: stop walking)."""
        result: bool = self.apply([self.move_walk_step(cursor, lease_s)])[0]
        return result

    def renew_walk(self, region: str, lease_s: float, holder: str | None = None) -> bool:
        """Hold the region's walk `lease_s` longer (from now) without moving its cursor, if it is
        still `holder`'s (by default this thread's); False if it is not."""
        ck, who = cursor_key(region), holder or self.holder

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            rec = self._live(recs, ck)
            if rec is None or rec.value.get("owner") != who:
                return [], False
            cur = SweepCursor.from_value(region, rec.value)
            return [self._write(recs, replace(cur, lease_until=self.clock() + lease_s))], True

        result: bool = self._cas([ck], change)
        return result

    def release_walk(self, cursor: SweepCursor) -> bool:
        """Save where the walk stopped and let the next sweeper take it at once."""
        result: bool = self.apply([self.move_walk_step(cursor, 0.0)])[0]
        return result

    # ---- the rules, as steps -------------------------------------------------------------------

    def take_walk_step(self, region: str, lease_s: float) -> Step:
        ck = cursor_key(region)

        def change(recs: dict[str, Record]) -> tuple[list[Write], SweepCursor | None]:
            now = self.clock()
            rec = self._live(recs, ck)
            cur = SweepCursor.from_value(region, rec.value) if rec else SweepCursor(region)
            if cur.owner not in (None, self.holder) and cur.lease_until > now:
                return [], None
            cur = replace(cur, owner=self.holder, lease_until=now + lease_s)
            return [self._write(recs, cur)], cur

        return Step((ck,), change, "take_walk", region)

    def move_walk_step(self, cursor: SweepCursor, lease_s: float) -> Step:
        ck = cursor_key(cursor.region)

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            now = self.clock()
            rec = self._live(recs, ck)
            if rec is None or rec.value.get("owner") != self.holder:
                return [], False
            held = lease_s > 0
            cur = replace(cursor, owner=self.holder if held else None,
                          lease_until=now + lease_s if held else 0.0)
            return [self._write(recs, cur)], True

        return Step((ck,), change, "move_walk", cursor.region)

    def _write(self, recs: dict[str, Record], cur: SweepCursor) -> Write:
        rec: Any = recs.get(cursor_key(cur.region))
        return Write(cursor_key(cur.region), cur.value(), rec.version if rec else 0,
                     expires_at=self.clock() + CURSOR_KEEP_S)
