"""Turns of the API's limits, shared by every instance, and the drainer lease: one instance at a time
drains the queue for everyone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from handler.ledger.records import DRAINER_KEY, Records, Token, token_key
from handler.ledger.store import Record, Value, Write


class Turns(Records):
    def take_token(self, action: str, rate_per_s: float, window_s: float = 1.0,
                   call_s: float = 10.0) -> Token:
        """Take a turn to call `action`, shared by every instance, so that the calls *arrive* at
        the API at least `spacing` apart: `window_s` over the calls allowed in it (`rate_per_s *
        window_s`, rounded down), 1/rate for Tencent's whole-number limits.

        Tencent's "2 requests per second" does not say how it counts. Spaced arrivals keep within
        every reading: k arrivals span at least (k-1)·spacing, so a window of `window_s` (which
        holds only a span shorter than itself) holds `rate_per_s * window_s` of them at most; and
        a token bucket refilled at that rate has a token back by each arrival, whatever its burst
        (one token, an API gateway's limit without burst allowance, is the strictest).

        When a call arrives is known only to lie after its grant and before its answer. So a
        turn is granted once the previous call has its answer (`call_done`) and `spacing` has
        passed since: one call of an action is in flight across the fleet, and at the API's
        ceiling each call costs its round trip on top of `spacing`. A call never reported done
        (its caller died) is taken as answered `call_s` after its grant."""
        tk = token_key(action)
        spacing = window_s / max(1, math.floor(rate_per_s * window_s + 1e-9))
        poll = max(0.005, spacing / 25)

        def change(recs: dict[str, Record]) -> tuple[list[Write], Token]:
            now = self.clock()
            rec = recs.get(tk)
            value = rec.value if rec else {}
            slots = value.get("slots") or []
            if slots:
                at, done = slots[-1]
                if done is None:
                    free_at = float(at or 0.0) + call_s + spacing
                    if free_at > now:
                        return [], Token(min(poll, free_at - now), None)
                elif float(done) + spacing > now:
                    return [], Token(float(done) + spacing - now, None)
            # `next_at` keeps an instance of the version that let two calls be in flight
            # (during a deployment) from granting sooner than `spacing`.
            return [Write(tk, {"next_at": now + spacing, "slots": [[now, None]]},
                          rec.version if rec else 0, expires_at=now + 3600)], Token(0.0, now)

        result: Token = self._cas([tk], change)
        return result

    def call_done(self, action: str, slot: float) -> None:
        """The call granted at `slot` has its answer (or failed): it can no longer arrive, and the
        next turn comes `spacing` after now."""
        tk = token_key(action)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(tk)
            if rec is None:
                return [], None
            slots = [list(x) for x in rec.value.get("slots", [])]
            mine = [x for x in slots if x[0] == slot and x[1] is None]
            if not mine:
                return [], None  # taken as answered already (see take_token's `call_s`)
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

    def renew_drainer(self, lease_s: float, holder: str | None = None) -> bool:
        """Hold the drainer's lease `lease_s` longer (from now), if it is still `holder`'s (by
        default this thread's; a thread that keeps the lease for another names it). False if it is
        not: another instance took it after ours ran out, or it was released. A drainer that dies
        stops renewing, and the next notice takes over once the short lease runs out."""
        who = holder or self.holder

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            rec = recs.get(DRAINER_KEY)
            if rec is None or rec.value.get("owner") != who:
                return [], False
            now = self.clock()
            return [Write(DRAINER_KEY, dict(rec.value, lease_until=now + lease_s), rec.version,
                          expires_at=now + lease_s + 3600)], True

        result: bool = self._cas([DRAINER_KEY], change)
        return result

    def collect_knocks(self, lease_s: float) -> Knocks | None:
        """The drainer takes the keys knocked since it last looked (only the lease holder does),
        and holds its lease `lease_s` longer from now. None if the lease is no longer this
        thread's."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], Knocks | None]:
            rec = recs.get(DRAINER_KEY)
            if rec is None or rec.value.get("owner") != self.holder:
                return [], None
            now = self.clock()
            value = {k: v for k, v in rec.value.items() if k not in ("knocks", "unnamed")}
            value["lease_until"] = now + lease_s
            return [Write(DRAINER_KEY, value, rec.version, expires_at=now + lease_s + 3600)], \
                _knocks(rec.value)

        result: Knocks | None = self._cas([DRAINER_KEY], change)
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
