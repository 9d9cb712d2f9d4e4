"""The ledger's rules: the due queue, claims with leases, per-job counters, token buckets.

Records (keys are backend-neutral; a backend may add its own namespace):
- `q/<region>/<job>`: a queue entry — the job is due to be verified at `due_at`. Taking an entry
  leases it by moving its due time to the lease's end, so a flusher that dies simply lets it come
  due again.
- `f/<region>/<job>/<EndTime>`: one failure — CLAIMED or AMBIGUOUS (with a lease), RETRIED or
  SKIPPED (final). Created once, ever, within retention.
- `j/<region>/<job>`: the job — retries spent per counter, failures still pending an outcome, and
  its recent decisions (what operators read).
- `t/<action>`: a token bucket shared by every instance. `b/<window>`: fleet retries in a window.

Every change is a compare-and-set over versioned records, retried on conflict, so the rules hold
for any number of concurrent instances on any backend.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from handler.jobs import FailureKey, JobRef
from handler.ledger.store import Record, Store, Value, Write
from handler.policy import FleetBudget, JobHistory, RetryDecision

DEFAULT_RETENTION_S = 3 * 86400.0  # covers a day of topic redeliveries with room to spare
MAX_CAS_TRIES = 50
DECISIONS_KEPT = 50


class FailureState(StrEnum):
    CLAIMED = "CLAIMED"
    AMBIGUOUS = "AMBIGUOUS"
    RETRIED = "RETRIED"
    SKIPPED = "SKIPPED"


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # the caller may call RetryJobs for this failure
    TAKEN_OVER = "taken_over"  # claimed after an earlier claimant's lease expired
    DUPLICATE = "duplicate"  # already retried, skipped, or claimed by a live lease
    OVER_CAP = "max_attempts"  # the job's counter already reached the decision's cap
    OVER_FLEET_BUDGET = "budget_exhausted"  # the fleet-wide retry budget for this window is spent


@dataclass(frozen=True)
class Token:
    """take_token's answer: `slot` (the grant's time, to report with call_done) if granted, else
    how long to wait before asking again."""

    wait_s: float
    slot: float | None


class Contention(RuntimeError):
    """A record kept changing under us; the caller treats it like a transient store error."""


@dataclass
class QueueEntry:
    job: JobRef
    version: int
    due_at: float
    owner: str | None = None
    lease_until: float = 0.0
    event_name: str | None = None
    event_vars: dict[str, str] = field(default_factory=dict)
    notices: int = 0
    first_seen: float = 0.0
    backoff_step: int = 0
    rejections: int = 0

    def value(self) -> Value:
        return {
            "region": self.job.region,
            "job_id": self.job.job_id,
            "due_at": self.due_at,
            "owner": self.owner,
            "lease_until": self.lease_until,
            "event_name": self.event_name,
            "event_vars": self.event_vars,
            "notices": self.notices,
            "first_seen": self.first_seen,
            "backoff_step": self.backoff_step,
            "rejections": self.rejections,
        }

    @classmethod
    def from_record(cls, rec: Record) -> QueueEntry:
        v = rec.value
        return cls(
            job=JobRef(v["region"], v["job_id"]),
            version=rec.version,
            due_at=float(v["due_at"]),
            owner=v.get("owner"),
            lease_until=float(v.get("lease_until") or 0.0),
            event_name=v.get("event_name"),
            event_vars=dict(v.get("event_vars") or {}),
            notices=int(v.get("notices") or 0),
            first_seen=float(v.get("first_seen") or 0.0),
            backoff_step=int(v.get("backoff_step") or 0),
            rejections=int(v.get("rejections") or 0),
        )


def queue_key(job: JobRef) -> str:
    return f"q/{job.region}/{job.job_id}"


def job_key(job: JobRef) -> str:
    return f"j/{job.region}/{job.job_id}"


def failure_key(key: FailureKey) -> str:
    return f"f/{key}"


def token_key(action: str) -> str:
    return f"t/{action}"


class Ledger:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        retention_s: float = DEFAULT_RETENTION_S,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention_s = retention_s
        self.owner = owner or uuid.uuid4().hex[:12]

    # ---- compare-and-set loop ------------------------------------------------------------------

    def _cas(self, keys: Sequence[str], change: Callable[[dict[str, Record]], Any]) -> Any:
        """Read `keys`, let `change` return (writes, result), commit; on conflict read again.
        `change` returns (None, result) to finish without writing."""
        for _ in range(MAX_CAS_TRIES):
            writes, result = change(self.store.get(keys))
            if not writes or self.store.commit(writes):
                return result
        raise Contention(f"records {list(keys)} kept changing; gave up after {MAX_CAS_TRIES} tries")

    def _live(self, recs: dict[str, Record], key: str) -> Record | None:
        rec = recs.get(key)
        return rec if rec is not None and rec.live(self.clock()) else None

    def _expires(self) -> float:
        return self.clock() + self.retention_s

    # ---- the due queue -------------------------------------------------------------------------

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

    def finish(self, entry: QueueEntry) -> None:
        """Done with a taken entry. If a notice arrived meanwhile, the entry stays, due now."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(queue_key(entry.job))
            if rec is None:
                return [], None
            if rec.version == entry.version:
                return [Write(queue_key(entry.job), None, rec.version)], None
            return self._requeue_now(rec), None

        self._cas([queue_key(entry.job)], change)

    def defer(self, entry: QueueEntry, due_at: float, **updates: Any) -> None:
        """Give a taken entry back, due at `due_at`, with `updates` applied (e.g. backoff_step)."""

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(queue_key(entry.job))
            if rec is None or rec.version != entry.version:
                # gone, or touched by a new notice: verify again soon rather than lose it
                return (self._requeue_now(rec) if rec is not None else []), None
            for name, value in updates.items():
                setattr(entry, name, value)
            entry.owner, entry.lease_until, entry.due_at = None, 0.0, due_at
            return [Write(queue_key(entry.job), entry.value(), rec.version, due_at=due_at)], None

        self._cas([queue_key(entry.job)], change)

    def _requeue_now(self, rec: Record) -> list[Write]:
        fresh = QueueEntry.from_record(rec)
        now = self.clock()
        fresh.owner, fresh.lease_until, fresh.due_at = None, 0.0, now
        return [Write(queue_key(fresh.job), fresh.value(), rec.version, due_at=now)]

    # ---- failures and claims -------------------------------------------------------------------

    def history(self, job: JobRef, deciding: FailureKey | None = None) -> JobHistory:
        """Retries the job spent, per counter. With `deciding`, as a decision on that failure must
        see them: a claim on it that is still held (an unclear call, a crashed flusher) already spent
        from its counter, and taking it over spends nothing again, so it does not count against
        itself (else a held claim on the last allowed attempt would be skipped as over the cap)."""
        keys = [job_key(job)] + ([failure_key(deciding)] if deciding is not None else [])
        recs = self.store.get(keys)
        rec = self._live(recs, job_key(job))
        counters = {k: int(v) for k, v in (rec.value.get("counters", {}) if rec else {}).items()}
        held = self._live(recs, failure_key(deciding)) if deciding is not None else None
        if held is not None and held.value.get("state") in (FailureState.CLAIMED, FailureState.AMBIGUOUS):
            counter = str(held.value.get("counter", "attempts"))
            counters[counter] = max(0, counters.get(counter, 0) - 1)
        return JobHistory(counters=counters)

    def pending(self, job: JobRef) -> list[FailureKey]:
        """Failures of `job` claimed earlier whose outcome is not yet known."""
        rec = self._live(self.store.get([job_key(job)]), job_key(job))
        return [FailureKey.parse(k) for k in (rec.value.get("pending", []) if rec else [])]

    def state(self, key: FailureKey) -> tuple[FailureState, float] | None:
        """The failure's state and lease end, or None if this failure was never seen."""
        fk = failure_key(key)
        rec = self._live(self.store.get([fk]), fk)
        if rec is None:
            return None
        return FailureState(rec.value["state"]), float(rec.value.get("lease_until") or 0.0)

    def unseen(self, keys: Sequence[FailureKey]) -> set[FailureKey]:
        """The failures among `keys` the ledger has no record of (one read for the lot)."""
        recs = self.store.get([failure_key(k) for k in keys]) if keys else {}
        return {k for k in keys if self._live(recs, failure_key(k)) is None}

    def is_settled(self, key: FailureKey) -> bool:
        """True if another flush for this failure has nothing to do: it was retried or skipped,
        or someone holds a live lease on it."""
        st = self.state(key)
        if st is None:
            return False
        state, lease_until = st
        return state in (FailureState.RETRIED, FailureState.SKIPPED) or lease_until > self.clock()

    def _job_value(self, recs: dict[str, Record], job: JobRef) -> tuple[Value, int]:
        rec = recs.get(job_key(job))
        base: Value = {"region": job.region, "job_id": job.job_id, "counters": {}, "pending": [],
                       "decisions": []}
        if rec is None:
            return base, 0
        if not rec.live(self.clock()):
            return base, rec.version
        value = dict(rec.value)
        value.setdefault("counters", {})
        value.setdefault("pending", [])
        value.setdefault("decisions", [])
        return value, rec.version

    def _note(self, jv: Value, key: FailureKey, **decision: Any) -> None:
        decisions = [d for d in jv["decisions"] if d.get("key") != str(key)]
        decisions.append({"key": str(key), "at": self.clock(), **decision})
        jv["decisions"] = decisions[-DECISIONS_KEPT:]

    def claim(self, key: FailureKey, decision: RetryDecision, lease_s: float) -> ClaimOutcome:
        """Claim `key` for one RetryJobs call, spending one on the decision's counter within its cap
        and the fleet budget, all atomically. A failure is claimed once, ever; a claim whose lease
        expired may be taken over (the taker has re-read the job), spending nothing again."""
        now = self.clock()
        fk, jk = failure_key(key), job_key(key.job)
        keys = [fk, jk]
        bk = None
        if decision.fleet is not None:
            bk = _fleet_key(decision.fleet, now)
            keys.append(bk)

        def change(recs: dict[str, Record]) -> tuple[list[Write], ClaimOutcome]:
            f = self._live(recs, fk)
            takeover = False
            if f is not None:
                state = FailureState(f.value["state"])
                if state in (FailureState.RETRIED, FailureState.SKIPPED):
                    return [], ClaimOutcome.DUPLICATE
                if float(f.value.get("lease_until") or 0.0) > now:
                    return [], ClaimOutcome.DUPLICATE
                takeover = True
            jv, jver = self._job_value(recs, key.job)
            writes: list[Write] = []
            if takeover:
                assert f is not None
                fv = dict(f.value)
                counter = fv.get("counter")
            else:
                counter = decision.counter
                if int(jv["counters"].get(counter, 0)) >= decision.cap:
                    return [], ClaimOutcome.OVER_CAP
                if decision.fleet is not None and bk is not None:
                    b = self._live(recs, bk)
                    used = int(b.value["retries"]) if b else 0
                    if used >= decision.fleet.max_retries:
                        return [], ClaimOutcome.OVER_FLEET_BUDGET
                    brec = recs.get(bk)
                    writes.append(
                        Write(bk, {"retries": used + 1}, brec.version if brec else 0,
                              expires_at=now + decision.fleet.window_s * 2)
                    )
                jv["counters"][counter] = int(jv["counters"].get(counter, 0)) + 1
                fv = {"state": FailureState.CLAIMED, "counter": counter, "rule": decision.rule,
                      "reason": decision.reason, "claimed_at": now}
            fv.update(state=FailureState.CLAIMED, owner=self.owner, lease_until=now + lease_s)
            if str(key) not in jv["pending"]:
                jv["pending"].append(str(key))
            self._note(jv, key, action="RETRY", rule=decision.rule, reason=decision.reason,
                       outcome="claimed")
            writes.append(Write(fk, fv, f.version if f else _version(recs, fk),
                                expires_at=self._expires()))
            writes.append(Write(jk, jv, jver, expires_at=self._expires()))
            return writes, ClaimOutcome.TAKEN_OVER if takeover else ClaimOutcome.CLAIMED

        result: ClaimOutcome = self._cas(keys, change)
        return result

    def _settle(self, key: FailureKey, state: FailureState, outcome: str, refund: bool,
                lease_until: float = 0.0, only_if_owner: bool = True) -> None:
        fk, jk = failure_key(key), job_key(key.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            f = self._live(recs, fk)
            if f is None:
                return [], None
            if only_if_owner and f.value.get("owner") != self.owner:
                return [], None  # our lease expired and someone took the failure over
            if FailureState(f.value["state"]) in (FailureState.RETRIED, FailureState.SKIPPED):
                return [], None
            jv, jver = self._job_value(recs, key.job)
            if refund:
                _refund(jv, f)
            if state != FailureState.AMBIGUOUS:
                jv["pending"] = [k for k in jv["pending"] if k != str(key)]
            for d in jv["decisions"]:
                if d.get("key") == str(key):
                    d["outcome"] = outcome
                    d["settled_at"] = self.clock()
            writes = [Write(jk, jv, jver, expires_at=self._expires())]
            if refund:
                writes.append(Write(fk, None, f.version))
            else:
                fv = dict(f.value, state=state, lease_until=lease_until, settled_at=self.clock())
                writes.append(Write(fk, fv, f.version, expires_at=self._expires()))
            return writes, None

        self._cas([fk, jk], change)

    def record_retried(self, key: FailureKey, outcome: str = "retried") -> None:
        self._settle(key, FailureState.RETRIED, outcome, refund=False)

    def confirm_retried(self, key: FailureKey) -> None:
        """A pending failure the job has since left: our call (or its takeover's) was applied."""
        self._settle(key, FailureState.RETRIED, "retried (confirmed by re-read)", refund=False,
                     only_if_owner=False)

    def release(self, key: FailureKey, outcome: str) -> None:
        """The call was certainly not applied: forget the claim and refund what it spent."""
        self._settle(key, FailureState.CLAIMED, outcome, refund=True)

    def mark_ambiguous(self, key: FailureKey, recheck_at: float, outcome: str) -> None:
        """The call may or may not have been applied: hold the claim until the job is re-read."""
        self._settle(key, FailureState.AMBIGUOUS, outcome, refund=False, lease_until=recheck_at)

    def record_skip(self, key: FailureKey, rule: str, reason: str) -> bool:
        """Remember a failure the policy (or a limit) left alone, so sweeps do not bring it back.
        False if the failure was already settled or is claimed under a live lease. A claim whose
        lease ended (a crashed flusher, or an unclear call the job's state shows was never
        applied) is settled as skipped: its spend is refunded and it is pending no more."""
        fk, jk = failure_key(key), job_key(key.job)

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            f = self._live(recs, fk)
            held = (FailureState.CLAIMED, FailureState.AMBIGUOUS)
            if f is not None and (FailureState(f.value["state"]) not in held
                                  or float(f.value.get("lease_until") or 0) > self.clock()):
                return [], False
            jv, jver = self._job_value(recs, key.job)
            if f is not None:
                _refund(jv, f)
                jv["pending"] = [k for k in jv["pending"] if k != str(key)]
            self._note(jv, key, action="SKIP", rule=rule, reason=reason, outcome="skipped")
            fv = {"state": FailureState.SKIPPED, "rule": rule, "reason": reason,
                  "settled_at": self.clock()}
            return [
                Write(fk, fv, f.version if f else _version(recs, fk), expires_at=self._expires()),
                Write(jk, jv, jver, expires_at=self._expires()),
            ], True

        result: bool = self._cas([fk, jk], change)
        return result

    def next_due(self, within_s: float) -> float | None:
        """When the earliest entry comes due, if that is within `within_s` from now."""
        keys = self.store.due(self.clock() + within_s, 1)
        rec = self.store.get(keys).get(keys[0]) if keys else None
        return float(rec.value["due_at"]) if rec is not None else None

    # ---- the drainer: one instance at a time drains the queue for everyone ------------------------

    def acquire_drainer(self, lease_s: float) -> bool:
        """Become the fleet's drainer for `lease_s` unless another instance is."""
        dk = "d/drainer"

        def change(recs: dict[str, Record]) -> tuple[list[Write], bool]:
            rec = recs.get(dk)
            now = self.clock()
            if rec is not None and rec.value.get("owner") != self.owner and \
                    float(rec.value.get("lease_until") or 0) > now:
                return [], False
            return [Write(dk, {"owner": self.owner, "lease_until": now + lease_s},
                          rec.version if rec else 0, expires_at=now + lease_s + 3600)], True

        result: bool = self._cas([dk], change)
        return result

    def release_drainer(self) -> None:
        dk = "d/drainer"

        def change(recs: dict[str, Record]) -> tuple[list[Write], None]:
            rec = recs.get(dk)
            if rec is None or rec.value.get("owner") != self.owner:
                return [], None
            return [Write(dk, None, rec.version)], None

        self._cas([dk], change)

    # ---- shared rate limits ----------------------------------------------------------------------

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

    # ---- what operators see ----------------------------------------------------------------------

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


def _version(recs: dict[str, Record], key: str) -> int:
    rec = recs.get(key)
    return rec.version if rec else 0


def _refund(jv: Value, claim: Record) -> None:
    """Give back what a claim spent from its job's counter (the call was never applied)."""
    counter = claim.value.get("counter", "attempts")
    jv["counters"][counter] = max(0, int(jv["counters"].get(counter, 0)) - 1)


def _fleet_key(fleet: FleetBudget, now: float) -> str:
    window = math.floor(now / fleet.window_s) * fleet.window_s
    return f"b/{fleet.window_s:g}/{window:.0f}"
