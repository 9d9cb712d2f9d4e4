"""The ledger's records, what it needs to know of a spend, and the compare-and-set every rule uses.

Records (keys are backend-neutral; a backend may add its own namespace):
- `q/<region>/<job>`: a queue entry — the job is due to be verified at `due_at`. Taking an entry
  leases it by moving its due time to the lease's end, so a flusher that dies simply lets it come
  due again.
- `f/<region>/<job>/<EndTime>`: one failure — CLAIMED or AMBIGUOUS (with a lease), RETRIED or
  SKIPPED (final), or HELD (it came while the operator held the job: not retried, and not looked
  for again by the sweep; a notice after the release decides it anew). Created once, ever, within
  retention.
- `j/<region>/<job>`: the job — retries spent per counter, failures still pending an outcome, and
  its recent decisions (what operators read).
- `h/<region>/<job>`: the operator's hold on the job (`python -m handler hold|terminate`), with its
  reason. It never expires: it lasts until it is released. A record of its own, not a field of
  the job's record, because that record expires with retention and is not there before a failure.
- `t/<action>`: a turn of the API's limit shared by every instance. `b/<window>`: fleet retries in a
  window. `d/drainer`: which instance drains the queue for everyone.

Every change is a compare-and-set over versioned records, retried on conflict, so the rules hold
for any number of concurrent instances on any backend. A rule is written once, as a `Step` (the
keys it reads and a pure function from those records to writes and a result); `apply` runs one step
or a whole batch of them in one read and one commit, falling back to one step at a time only when
another instance changed a record in between.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from handler.jobs import FailureKey, JobRef
from handler.ledger.store import Record, Store, StoreUnavailable, Value, Write

DEFAULT_RETENTION_S = 3 * 86400.0  # covers a day of topic redeliveries with room to spare
MAX_CAS_TRIES = 50
DECISIONS_KEPT = 50
ATTEMPTS = "attempts"  # the counter a spend draws on when it names none


class FailureState(StrEnum):
    CLAIMED = "CLAIMED"
    AMBIGUOUS = "AMBIGUOUS"
    RETRIED = "RETRIED"
    SKIPPED = "SKIPPED"
    HELD = "HELD"  # it came while the operator held the job


# A claim in these states is held by a lease: its call may be under way.
LEASED_STATES = (FailureState.CLAIMED, FailureState.AMBIGUOUS)
FINAL_STATES = (FailureState.RETRIED, FailureState.SKIPPED)


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # the caller may call RetryJobs for this failure
    TAKEN_OVER = "taken_over"  # claimed after an earlier claimant's lease expired
    DUPLICATE = "duplicate"  # already retried, skipped, or claimed by a live lease
    OVER_CAP = "max_attempts"  # the job's counter already reached the decision's cap
    OVER_FLEET_BUDGET = "budget_exhausted"  # the fleet-wide retry budget for this window is spent
    HELD = "held"  # the operator holds the job: nothing was spent, no call may be made


class FleetLimit(Protocol):
    """At most `max_retries` retries across the fleet in any `window_s` window."""

    @property
    def max_retries(self) -> int: ...
    @property
    def window_s(self) -> float: ...


class Spend(Protocol):
    """What a claim spends: one on `counter`, allowed while it is below `cap`, and one of the fleet's
    budget if there is one. The rule and reason are kept with the decision operators read."""

    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def counter(self) -> str: ...
    @property
    def cap(self) -> int: ...
    @property
    def fleet(self) -> FleetLimit | None: ...


@dataclass(frozen=True)
class Spent:
    """Retries a job has spent, per counter."""

    counters: dict[str, int] = field(default_factory=dict)

    def spent(self, counter: str = ATTEMPTS) -> int:
        return self.counters.get(counter, 0)


@dataclass(frozen=True)
class Token:
    """take_token's answer: `slot` (the grant's time, to report with call_done) if granted, else
    how long to wait before asking again."""

    wait_s: float
    slot: float | None


class Contention(StoreUnavailable):
    """A record kept changing under us. Like any store failure it fails closed: nothing is retried
    and the delivery is answered so that it comes again."""


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
    # The StateReason the latest notice gave (Batch.StateReason), and the EndTime of the failure
    # it named (epoch seconds; None if it named none): the policy reads it for that failure only.
    said_reason: str | None = None
    said_end: float | None = None

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
            "said_reason": self.said_reason,
            "said_end": self.said_end,
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
            said_reason=v.get("said_reason"),
            said_end=float(v["said_end"]) if v.get("said_end") is not None else None,
        )


@dataclass(frozen=True)
class Hold:
    """The operator's word on a job: none of its failures is retried until the hold is released.
    `command` is the one that wrote it (`hold` or `terminate`)."""

    job: JobRef
    reason: str
    since: float
    command: str = "hold"

    def value(self) -> Value:
        return {"region": self.job.region, "job_id": self.job.job_id, "reason": self.reason,
                "since": self.since, "command": self.command}

    @classmethod
    def from_value(cls, job: JobRef, v: Value) -> Hold:
        return cls(job, str(v.get("reason") or "held by the operator"),
                   float(v.get("since") or 0.0), str(v.get("command") or "hold"))


def generation(key: FailureKey) -> tuple[str, int]:
    """A failure's EndTime as the API reports it, and which failure with that EndTime it is. A job
    that fails again after a retry but keeps its old EndTime (Tencent does not say it never does)
    has a new failure all the same: its key carries the generation, `<EndTime>#<n>`."""
    end, _, n = key.end_time.partition("#")
    return end, int(n) if n.isdigit() else 0


def with_generation(key: FailureKey, n: int) -> FailureKey:
    end, _ = generation(key)
    return FailureKey(key.region, key.job_id, end if n == 0 else f"{end}#{n}")


def queue_key(job: JobRef) -> str:
    return f"q/{job.region}/{job.job_id}"


def job_key(job: JobRef) -> str:
    return f"j/{job.region}/{job.job_id}"


def failure_key(key: FailureKey) -> str:
    return f"f/{key}"


def hold_key(job: JobRef) -> str:
    return f"h/{job.region}/{job.job_id}"


def token_key(action: str) -> str:
    return f"t/{action}"


DRAINER_KEY = "d/drainer"


def fleet_key(fleet: FleetLimit, now: float) -> str:
    window = math.floor(now / fleet.window_s) * fleet.window_s
    return f"b/{fleet.window_s:g}/{window:.0f}"


Change = Callable[[dict[str, Record]], tuple[list[Write], Any]]


@dataclass(frozen=True)
class Step:
    """One rule applied to a few records: read `keys`, let `change` return (writes, result). A change
    is a pure function of the records it is given (and the clock), so it can be run again on fresh
    reads after a conflict, or chained with other steps over one read."""

    keys: tuple[str, ...]
    change: Change
    name: str = ""  # which rule: "claim", "retried", "finish", ... (for tests and traces)
    subject: Any = None  # what it is about: a FailureKey, a QueueEntry, a JobRef


def version_of(recs: dict[str, Record], key: str) -> int:
    rec = recs.get(key)
    return rec.version if rec else 0


class Records:
    """The store, the clock and the compare-and-set loop that every section of the ledger shares."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time,
                 retention_s: float = DEFAULT_RETENTION_S, owner: str | None = None) -> None:
        self.store = store
        self.clock = clock
        self.retention_s = retention_s
        self.owner = owner or uuid.uuid4().hex[:12]

    @property
    def holder(self) -> str:
        """Who holds a lease that must be one invocation's alone (the drainer, the sweep's walk):
        this instance's owner name and the thread. Under `serve` (a thread a request) and a local
        continuation, several invocations share one instance; on SCF and Lambda an instance runs
        one invocation at a time and this is the same lease as before."""
        return f"{self.owner}.{threading.get_ident()}"

    def _cas(self, keys: Sequence[str], change: Change) -> Any:
        """Read `keys`, let `change` return (writes, result), commit; on conflict read again.
        `change` returns ([], result) to finish without writing."""
        for _ in range(MAX_CAS_TRIES):
            writes, result = change(self.store.get(keys))
            if not writes or self.store.commit(writes):
                return result
        raise Contention(f"{self.store.name}: records {list(keys)[:4]} kept changing; gave up after "
                         f"{MAX_CAS_TRIES} tries")

    def apply(self, steps: Sequence[Step]) -> list[Any]:
        """Run `steps` as if one after another, in one read and one commit (per `max_writes` of
        the store) when no other instance touches their records meanwhile; each step that lost a
        race is then run again on its own. Results come in the order of `steps`."""
        if len(steps) == 1:
            return [self._cas(steps[0].keys, steps[0].change)]
        results: list[Any] = [None] * len(steps)
        limit = getattr(self.store, "max_writes", None)
        todo = list(enumerate(steps))
        while todo:
            done, todo = self._apply_together(todo, limit, results)
            if not done:  # another instance got in between: one step at a time from here
                for i, step in todo:
                    results[i] = self._cas(step.keys, step.change)
                return results
        return results

    def _apply_together(self, todo: list[tuple[int, Step]], limit: int | None,
                        results: list[Any]) -> tuple[bool, list[tuple[int, Step]]]:
        """Chain as many of `todo` as fit one commit over one read; commit. Returns whether the
        group committed, and what is left (the whole of `todo` if not)."""
        keys = list(dict.fromkeys(k for _, s in todo for k in s.keys))
        base = self.store.get(keys)
        view = dict(base)
        merged: dict[str, Write] = {}
        taken: list[tuple[int, Any]] = []
        for i, step in todo:
            writes, result = step.change(view)
            grown = {**merged}
            for w in writes:
                first = merged.get(w.key)
                # A record written twice in the batch is written once, over its version as read.
                grown[w.key] = Write(w.key, w.value, first.expect if first else w.expect,
                                     expires_at=w.expires_at, due_at=w.due_at)
            if limit is not None and len(grown) > limit and taken:
                break
            merged = grown
            taken.append((i, result))
            for w in writes:
                if w.value is None:
                    view.pop(w.key, None)
                else:
                    view[w.key] = Record(w.value, w.expect + 1, w.expires_at)
        if merged and not self.store.commit(list(merged.values())):
            return False, todo
        for i, result in taken:
            results[i] = result
        return True, todo[len(taken):]

    def _live(self, recs: dict[str, Record], key: str) -> Record | None:
        rec = recs.get(key)
        return rec if rec is not None and rec.live(self.clock()) else None

    def _expires(self) -> float:
        return self.clock() + self.retention_s
