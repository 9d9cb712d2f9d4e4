"""Turns of the API's limits, shared by every instance, and the drainer lease: one instance at a time
drains the queue for everyone."""

from __future__ import annotations

from handler.ledger.records import DRAINER_KEY, Records, Token, token_key
from handler.ledger.store import Record, Write


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

    def acquire_drainer(self, lease_s: float) -> bool:
        """Become the fleet's drainer for `lease_s` unless another instance is."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            rec = recs.get(DRAINER_KEY)
            now = self.clock()
            if rec is not None and rec.value.get("owner") != self.holder and \
                    float(rec.value.get("lease_until") or 0) > now:
                return [], False
            return [Write(DRAINER_KEY, {"owner": self.holder, "lease_until": now + lease_s},
                          rec.version if rec else 0, expires_at=now + lease_s + 3600)], True

        result: bool = self._cas([DRAINER_KEY], change)
        return result

    def release_drainer(self) -> None:
        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(DRAINER_KEY)
            if rec is None or rec.value.get("owner") != self.holder:
                return [], None
            return [Write(DRAINER_KEY, None, rec.version)], None

        self._cas([DRAINER_KEY], change)
