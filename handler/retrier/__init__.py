"""The retrier: enqueue notices, flush due jobs in group commits, sweep for lost notices.

    notice ─► enqueue(job) ─► pump(): drain for the fleet if no other instance is draining
    flush(): take ≤100 due jobs ─► DescribeJobs ─► policy.decide ─► ledger.claim ─► one RetryJobs
             ─► ledger.record                                              (handler.retrier.flush)
    sweep(): drain what is due, then list FAILED jobs and enqueue failures never seen
                                                                           (handler.retrier.sweep)
Pacing (deadlines, shared turns of the API's limits) is `handler.retrier.pacing`; verification
before the policy is `handler.retrier.verify`. This facade wires them and owns the drain loops.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from handler.jobs import JobRef
from handler.ledger import Ledger
from handler.ledger.due import INDEX_LAG_S
from handler.ledger.records import queue_key
from handler.ledger.turns import MAX_KNOCKS
from handler.observe import Observer
from handler.policy import Policy
from handler.retrier.flush import MALFORMED_ID, Flusher, FlushReport, Gateway
from handler.retrier.heartbeat import Heartbeat
from handler.retrier.pacing import Deadline, NoTurn, OutOfTime, Pacer
from handler.retrier.settings import Settings
from handler.retrier.sweep import Sweeper
from handler.tags import TagMemory

if TYPE_CHECKING:
    from handler.notify import Notifications

# While the drainer waits for the index to show entries it was not told of, it looks this often.
INDEX_POLL_S = 0.25

__all__ = ["MALFORMED_ID", "Deadline", "FlushReport", "Gateway", "NoTurn", "OutOfTime", "Retrier",
           "Settings"]


class Retrier:
    def __init__(
        self,
        ledger: Ledger,
        gateway: Gateway,
        policy: Policy,
        *,
        settings: Settings | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        tags: TagMemory | None = None,
        notifications: Notifications | None = None,
    ) -> None:
        self.ledger, self.gateway, self.policy = ledger, gateway, policy
        self.settings = settings or Settings()
        self.clock, self.sleep = clock, sleep
        pacer = Pacer(ledger, self.settings, gateway.timeout_s, sleep)
        self.tags, self.notifications = tags, notifications
        self.flusher = Flusher(ledger, gateway, policy, self.settings, Observer(), pacer, clock,
                               rng, tags, notifications.announcer() if notifications else None)
        self.sweeper = Sweeper(ledger, gateway, policy, self.settings, Observer(), pacer, clock)
        self.observer = observer or Observer()
        # The queue keys this invocation wrote (a Retrier serves one invocation): the drainer
        # reads them, or is told of them, without the due index.
        self._wrote: list[str] = []

    @property
    def observer(self) -> Observer:
        """Where every part of this retrier logs and counts."""
        return self.flusher.observer

    @observer.setter
    def observer(self, observer: Observer) -> None:
        self.flusher.observer = self.sweeper.observer = observer

    def enqueue(self, job: JobRef, event_name: str | None, event_vars: dict[str, str],
                said: tuple[str, float | None] | None = None) -> None:
        """Put a notice's job in the queue; `said`: the StateReason the notice gave, and the
        EndTime (epoch seconds, or None) of the failure it named."""
        self.ledger.enqueue(job, event_name=event_name, event_vars=event_vars, said=said)
        self._wrote.append(queue_key(job))
        self.observer.count("notices.enqueued")

    def flush(self, deadline: Deadline, wait: bool = False) -> FlushReport:
        return self.flusher.flush(deadline, wait)

    def drain(self, deadline: Deadline, wait: bool = True, linger_s: float = 0.0,
              known: set[str] | None = None, written: set[str] | None = None) -> FlushReport:
        """Flush until nothing is due or time runs out. With `linger_s`, an entry coming due that
        soon (a short backoff) is waited for rather than left to the next timer.

        The drainer (see `pump`) also reads entries by key, where the due index may not show them
        yet: `known` before every flush, together with the keys knocked on its record; `written`
        (the rest of what its invocation wrote) once the index shows nothing due. After a knock
        that could not name its keys, nothing is taken as idle until the index has had
        `INDEX_LAG_S` to show them. Each of those looks renews the drainer's lease; once the lease
        is another's, the drain stops as `busy`."""
        total = FlushReport()
        unnamed_until = 0.0
        while True:
            if known is not None:
                knocks = self.ledger.collect_knocks(self.settings.renewed_lease_s)
                if knocks is None:  # our lease ran out and another drainer took over
                    total.stopped = "busy"
                    self._settle_tags(deadline)
                    return total
                known.update(knocks.keys)
                if knocks.unnamed:
                    unnamed_until = self.clock() + INDEX_LAG_S
            report = self.flusher.flush(deadline, wait, known)
            total.add(report)
            if report.stopped == "idle" and known is not None and written:
                due = self.ledger.has_due(written)  # read by key; keeps what still waits
                known.update(written)
                written.clear()
                if due:
                    continue
            if report.stopped == "idle" and linger_s > 0:
                horizon = min(linger_s, deadline.remaining() - self.gateway.timeout_s * 2 - 1)
                due_at = self.ledger.next_due(horizon, known) if horizon > 0 else None
                if due_at is None and unnamed_until > self.clock() and horizon > 0:
                    due_at = min(unnamed_until, self.clock() + INDEX_POLL_S)
                if due_at is not None:
                    self.sleep(max(0.0, due_at - self.clock()) + 0.001)
                    continue
            if report.stopped is not None:
                total.stopped = report.stopped
                self._settle_tags(deadline)
                return total

    def pump(self, deadline: Deadline, linger_s: float = 5.0) -> FlushReport:
        """After a notice: drain for the whole fleet if no other invocation is draining, else
        knock with the keys this invocation wrote and return at once (the drainer takes them).
        Under a burst this makes one invocation flush full batches at the API's pace while the
        others only enqueue.

        The hand-off does not rest on the due index, which may lag (DynamoDB's): the drainer
        reads the keys it was told of consistently, and it leaves only after a last look at its
        record finds no knock it has not taken. Whatever stopped the drain, that look is taken:
        after `idle` or `busy` (the API's turns were another instance's) it drains again while
        time is left; after `time` it says in `left_due` that work nobody has tried is waiting,
        for a continuation (handler.ingress) to take."""
        total = FlushReport()
        # The keys written since the last pump (a pull tick pumps after each read of the queue).
        # A knock names the latest (more would not fit the drainer's record); the drainer reads
        # those before every flush, the rest once the index shows nothing.
        wrote, self._wrote = list(dict.fromkeys(self._wrote)), []
        named, unnamed = wrote[-MAX_KNOCKS:], max(0, len(wrote) - MAX_KNOCKS)
        known, written = set(named), set(wrote[:unnamed])
        lease_s, holder = self.settings.renewed_lease_s, self.ledger.holder
        while True:
            if not self.ledger.acquire_drainer(lease_s, knock=named, unnamed=unnamed):
                total.stopped = total.stopped or "busy"
                return total
            # A short lease, renewed while the drain runs: if this instance dies, the next notice
            # drains within `lease_s` instead of waiting out this invocation's whole deadline.
            keeping = Heartbeat(lambda: self.ledger.renew_drainer(lease_s, holder), lease_s,
                                self.observer, "drainer")
            try:
                with keeping:
                    report = self.drain(deadline, wait=True, linger_s=linger_s, known=known,
                                        written=written)
            finally:
                left = self.ledger.release_drainer()
            total.add(report)
            known.update(left.keys)  # (its unnamed count stays on the record, for the next drain)
            total.stopped = report.stopped
            # A notice that saw our lease and left relies on this second look. Out of time, what
            # counts is work no drainer has tried yet: an entry whose call failed waits out its
            # backoff, for whoever drains next or the timer.
            total.left_due = bool(left) or self.ledger.has_due(known | written,
                                                               untried=report.stopped == "time")
            if not total.left_due or report.stopped == "time":
                return total

    def deliver_notices(self, deadline: Deadline) -> None:
        """Send the give-up messages that are due, in whatever time is left; never raises. Called
        where nobody waits (the timer, the queue pull, a continuation), never before a retry."""
        if self.notifications is not None:
            self.notifications.deliver(self.observer, deadline.remaining())

    def _settle_tags(self, deadline: Deadline) -> None:
        # The tags of the jobs retried are written on a thread; the invocation must not end (and
        # freeze it) before they are, unless its time is up.
        if self.tags is not None:
            self.tags.settle(max(0.0, deadline.remaining() - 0.5))

    def reconcile(self, deadline: Deadline, progress: Callable[[str], None] | None = None) -> int:
        return self.sweeper.reconcile(deadline, self.drain, progress)

    def sweep(self, deadline: Deadline, progress: Callable[[str], None] | None = None
              ) -> FlushReport:
        report = self.drain(deadline)
        if report.stopped == "time":
            return report
        try:
            self.reconcile(deadline, progress)
        except OutOfTime:
            report.stopped = "time"
            return report
        report.add(self.drain(deadline))
        self.deliver_notices(deadline)
        return report
