"""Turns of the API's limits, shared by every instance, and the drainer lease: one instance at a time
drains the queue for everyone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from handler.ledger.records import DRAINER_KEY, Records, Token, token_key
from handler.ledger.store import Record, Value, Write


class Turns(Records):
    def take_token(self, action: str, rate_per_s: float, window_s: float = 1.0,
                   call_s: float = 10.0) -> Token:
        """Take a turn to call `action`, shared by every instance. The API allows `rate_per_s *
        window_s` calls in any window of `window_s` and counts them when they *arrive*, which is
        after the grant by however long the caller takes to send. So besides spacing grants
        1/rate apart, a grant waits until the call that many grants back has finished (an arrival
        lies before its answer) and a window has passed since; a call never reported done (its
        caller died) is taken as finished `call_s` after its grant."""
        tk = token_key(action)
        interval = 1.0 / rate_per_s
        limit = max(1, round(rate_per_s * window_s))
        poll = max(0.005, window_s / 50)

        def change(recs: dict[str, Record]) -> tuple[list[Write], Token]:
            now = self.clock()
            rec = recs.get(tk)
            value = rec.value if rec else {}
            next_at = float(value.get("next_at", 0.0))
            if next_at > now:
                return [], Token(next_at - now, None)
            slots: list[list[float | None]] = [list(x) for x in value.get("slots", [])]
            if len(slots) >= limit:
                at, done = slots[-limit]
                if done is None:
                    free_at = float(at or 0.0) + call_s + window_s
                    if free_at > now:
                        return [], Token(min(poll, free_at - now), None)
                elif float(done) + window_s > now:
                    return [], Token(float(done) + window_s - now, None)
            slots = [*slots, [now, None]][-limit:]
            return [Write(tk, {"next_at": now + interval, "slots": slots},
                          rec.version if rec else 0, expires_at=now + 3600)], Token(0.0, now)

        result: Token = self._cas([tk], change)
        return result

    def call_done(self, action: str, slot: float) -> None:
        """The call granted at `slot` has its answer (or failed): it can no longer arrive."""
        tk = token_key(action)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(tk)
            if rec is None:
                return [], None
            slots = [list(x) for x in rec.value.get("slots", [])]
            mine = [x for x in slots if x[0] == slot and x[1] is None]
            if not mine:
                return [], None  # already pushed out of the window by later grants
            mine[0][1] = self.clock()
            return [Write(tk, dict(rec.value, slots=slots), rec.version, expires_at=rec.expires_at)], None

        self._cas([tk], change)

    def acquire_drainer(self, lease_s: float, knock: Sequence[str] = (), unnamed: int = 0) -> bool:
        """Become the fleet's drainer for `lease_s` unless another instance is. An invocation that
        finds another draining leaves `knock` (the queue keys it just wrote; `unnamed`: how many
        more it wrote and does not name) on the drainer's record, which is read consistently
        where the due index may lag: the drainer takes them (`collect_knocks`) and cannot leave
        without seeing them (`release_drainer`). Knocks left by an earlier drainer stay on the
        record for the next one."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            rec = recs.get(DRAINER_KEY)
            now = self.clock()
            value = dict(rec.value) if rec is not None else {}
            if rec is not None and value.get("owner") not in (None, self.holder) and \
                    float(value.get("lease_until") or 0) > now:
                knocked = _knocked(value, knock, unnamed)
                if knocked is None:
                    return [], False
                return [Write(DRAINER_KEY, knocked, rec.version, expires_at=rec.expires_at)], False
            value.update(owner=self.holder, lease_until=now + lease_s)
            return [Write(DRAINER_KEY, value, rec.version if rec else 0,
                          expires_at=now + lease_s + 3600)], True

        result: bool = self._cas([DRAINER_KEY], change)
        return result

    def collect_knocks(self) -> Knocks:
        """The drainer takes the keys knocked since it last looked (only the lease holder does)."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], Knocks]:
            rec = recs.get(DRAINER_KEY)
            if rec is None or rec.value.get("owner") != self.holder or not _pending(rec.value):
                return [], Knocks()
            value = {k: v for k, v in rec.value.items() if k not in ("knocks", "unnamed")}
            return [Write(DRAINER_KEY, value, rec.version, expires_at=rec.expires_at)], \
                _knocks(rec.value)

        result: Knocks = self._cas([DRAINER_KEY], change)
        return result

    def release_drainer(self) -> Knocks:
        """Stop being the drainer. Returns the knocks that came since the drainer last looked:
        they stay on the record, for this caller to drain again or for the next drainer."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], Knocks]:
            rec = recs.get(DRAINER_KEY)
            if rec is None or rec.value.get("owner") != self.holder:
                return [], Knocks()  # our lease ran out: whoever holds it now has the knocks
            if not _pending(rec.value):
                return [Write(DRAINER_KEY, None, rec.version)], Knocks()
            value = {k: v for k, v in rec.value.items() if k not in ("owner", "lease_until")}
            return [Write(DRAINER_KEY, value, rec.version, expires_at=rec.expires_at)], \
                _knocks(rec.value)

        result: Knocks = self._cas([DRAINER_KEY], change)
        return result


# A knock names its keys while the drainer's record holds fewer than this (a batch's worth, more
# than a flush's interval brings); beyond, it is only counted, and the drainer waits for the index
# to show what it was not told (handler.retrier's INDEX_LAG_S).
MAX_KNOCKS = 200


@dataclass(frozen=True)
class Knocks:
    """Queue keys written by invocations that found another draining, and how many more knocked
    without naming theirs (the record was full)."""

    keys: tuple[str, ...] = ()
    unnamed: int = 0

    def __bool__(self) -> bool:
        return bool(self.keys) or self.unnamed > 0


def _pending(value: Value) -> bool:
    return bool(value.get("knocks")) or int(value.get("unnamed") or 0) > 0


def _knocks(value: Value) -> Knocks:
    return Knocks(tuple(value.get("knocks") or ()), int(value.get("unnamed") or 0))


def _knocked(value: Value, keys: Sequence[str], unnamed: int = 0) -> Value | None:
    """The drainer's record with `keys` (and `unnamed` more) knocked on it; None when it already
    holds every key and none is unnamed (a repeated knock writes nothing)."""
    held = list(value.get("knocks") or ())
    new = [k for k in dict.fromkeys(keys) if k not in held]
    if not new and not unnamed:
        return None
    room = max(0, MAX_KNOCKS - len(held))
    return dict(value, knocks=held + new[:room],
                unnamed=int(value.get("unnamed") or 0) + len(new[room:]) + unnamed)
