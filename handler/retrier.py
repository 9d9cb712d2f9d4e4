"""Enqueue, flush and sweep: the retrier orchestrates ledger, gateway and policy it is given.

    notice ─► enqueue(job) ─► flush() if a token is free
    flush(): take ≤100 due jobs ─► DescribeJobs ─► policy.decide ─► ledger.claim ─► one RetryJobs
             ─► ledger.record
    sweep(): drain what is due, then list FAILED jobs and enqueue failures never seen.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from handler.gateway import MAX_IDS_PER_CALL, RATE_LIMITS, ApiError, ErrorKind
from handler.jobs import FailureKey, JobDetail, JobRef, JobView, iso_epoch
from handler.ledger import ClaimOutcome, FailureState, Ledger, QueueEntry
from handler.observe import Observer
from handler.policy import Action, Failure, Policy, RetryDecision

T = TypeVar("T")


class Gateway(Protocol):
    timeout_s: float

    def describe_jobs(self, region: str, job_ids: list[str]) -> dict[str, JobView]: ...
    def list_jobs(self, region: str, state: str, offset: int, limit: int = ...
                  ) -> tuple[list[JobView], int]: ...
    def describe_job(self, region: str, job_id: str) -> JobDetail: ...
    def retry_jobs(self, region: str, job_ids: list[str]) -> str: ...


# DescribeJobs refuses a whole batch when one id is not in the API's format.
MALFORMED_ID = "InvalidParameter.JobIdMalformed"


class OutOfTime(Exception):
    """The invocation's time is nearly up: leave the rest due for the next one."""


@dataclass(frozen=True)
class Deadline:
    """When this invocation must stop taking work (the platform's limit less a reserve)."""

    at: float
    clock: Callable[[], float] = time.time

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.time) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()


@dataclass(frozen=True)
class Settings:
    lease_s: float = 60.0  # a claim or a taken entry is ours this long
    recheck_s: float = 30.0  # after an ambiguous RetryJobs, re-read the job this much later
    backoff_base_s: float = 1.0  # after a throttle or transient error: base·2^n, full jitter…
    backoff_cap_s: float = 60.0  # …capped here
    dry_run: bool = False
    rates: dict[str, float] = field(default_factory=lambda: dict(RATE_LIMITS))
    regions: tuple[str, ...] = ("ap-guangzhou",)
    max_token_wait_s: float = 5.0
    window_s: float = 1.0  # the API counts `rate * window_s` calls per window of this length


@dataclass
class FlushReport:
    taken: int = 0
    retried: list[str] = field(default_factory=list)
    api_calls: int = 0
    stopped: str | None = None  # why the drain stopped early: "time", "idle", ...

    def add(self, other: FlushReport) -> None:
        self.taken += other.taken
        self.retried += other.retried
        self.api_calls += other.api_calls


@dataclass
class _Candidate:
    entry: QueueEntry
    key: FailureKey
    decision: RetryDecision
    claimed_at: float
    taken_over: bool = False  # an earlier holder's lease ran out: its call may have been applied


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
    ) -> None:
        self.ledger, self.gateway, self.policy = ledger, gateway, policy
        self.settings = settings or Settings()
        self.observer = observer or Observer()
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()

    # ---- notices in ----------------------------------------------------------------------------

    def enqueue(self, job: JobRef, event_name: str | None, event_vars: dict[str, str]) -> None:
        self.ledger.enqueue(job, event_name=event_name, event_vars=event_vars)
        self.observer.count("notices.enqueued")

    # ---- tokens --------------------------------------------------------------------------------

    def _token(self, action: str, deadline: Deadline, wait: bool) -> float | None:
        """Take a turn of the account-wide limit for `action`; wait for one only if asked. Returns
        the grant's slot, to hand to `_done` once the call has its answer; None if not granted."""
        rate = self.settings.rates[action]
        waited = 0.0
        while True:
            token = self.ledger.take_token(action, rate, self.settings.window_s,
                                           call_s=2 * self.gateway.timeout_s)
            if token.slot is not None:
                return token.slot
            pause = token.wait_s
            if not wait or waited + pause > self.settings.max_token_wait_s:
                return None
            if deadline.remaining() - pause < self.gateway.timeout_s:
                raise OutOfTime(action)
            self.sleep(pause)
            waited += pause

    def _done(self, action: str, slot: float) -> None:
        self.ledger.call_done(action, slot)

    def _call(self, action: str, slot: float, call: Callable[..., T], *args: object) -> T:
        """Make the call the turn at `slot` was granted for; its answer (or failure) frees the turn."""
        try:
            return call(*args)
        finally:
            self._done(action, slot)

    # ---- flush ---------------------------------------------------------------------------------

    def drain(self, deadline: Deadline, wait: bool = True, linger_s: float = 0.0) -> FlushReport:
        """Flush until nothing is due or time runs out. With `linger_s`, an entry coming due that
        soon (a short backoff) is waited for rather than left to the next timer."""
        total = FlushReport()
        while True:
            report = self.flush(deadline, wait=wait)
            total.add(report)
            if report.stopped == "idle" and linger_s > 0:
                horizon = min(linger_s, deadline.remaining() - self.gateway.timeout_s * 2 - 1)
                due_at = self.ledger.next_due(horizon) if horizon > 0 else None
                if due_at is not None:
                    self.sleep(max(0.0, due_at - self.clock()) + 0.001)
                    continue
            if report.stopped is not None:
                total.stopped = report.stopped
                return total

    def pump(self, deadline: Deadline, linger_s: float = 5.0) -> FlushReport:
        """After a notice: drain for the whole fleet if no other instance is draining, else
        return at once (the drainer will see our entry). Under a burst this makes one instance
        flush full batches at the API's pace while the others only enqueue."""
        total = FlushReport()
        while True:
            if not self.ledger.acquire_drainer(max(deadline.remaining(), 1.0) + 5.0):
                total.stopped = total.stopped or "busy"
                return total
            try:
                report = self.drain(deadline, wait=True, linger_s=linger_s)
            finally:
                self.ledger.release_drainer()
            total.add(report)
            # A notice that saw our lease and left relies on this second look.
            if report.stopped == "time" or not self.ledger.has_due():
                total.stopped = report.stopped
                return total

    def flush(self, deadline: Deadline, wait: bool = False) -> FlushReport:
        """One group commit: up to 100 due jobs, one DescribeJobs, one RetryJobs. With `wait`
        False it gives up at once when the API's token is taken by another instance."""
        report = FlushReport()
        # Each call checks again that it still fits (see _token); a flush starts if one does.
        if deadline.remaining() < self.gateway.timeout_s + 1:
            report.stopped = "time"
            return report
        if not self.ledger.has_due():
            report.stopped = "idle"
            return report
        try:
            slot = self._token("DescribeJobs", deadline, wait)
            if slot is None:
                report.stopped = "busy"
                return report
        except OutOfTime:
            report.stopped = "time"
            return report
        entries = self.ledger.take(MAX_IDS_PER_CALL, self.settings.lease_s)
        report.taken = len(entries)
        if not entries:
            self._done("DescribeJobs", slot)
            report.stopped = "idle"
            return report
        by_region: dict[str, list[QueueEntry]] = defaultdict(list)
        for e in entries:
            by_region[e.job.region].append(e)
        first = True
        for region, group in by_region.items():
            try:
                if not first:
                    next_slot = self._token("DescribeJobs", deadline, True)
                    if next_slot is None:
                        raise OutOfTime("DescribeJobs")
                    slot = next_slot
                first = False
                self._flush_region(region, group, deadline, report, slot)
            except OutOfTime:
                for e in group:
                    self.ledger.defer(e, self.clock())
                report.stopped = "time"
        return report

    def _flush_region(self, region: str, entries: list[QueueEntry], deadline: Deadline,
                      report: FlushReport, slot: float) -> None:
        try:
            report.api_calls += 1
            views = self._call("DescribeJobs", slot, self.gateway.describe_jobs, region,
                               [e.job.job_id for e in entries])
        except ApiError as e:
            if e.code.startswith(MALFORMED_ID):
                self._isolate_malformed(region, entries, deadline, report, e)
                return
            self.observer.warning("DescribeJobs failed", region=region, code=e.code, kind=e.kind)
            self.observer.count(f"api.{e.kind}")
            for entry in entries:
                self._back_off(entry)
            return
        candidates: list[_Candidate] = []
        for entry in entries:
            try:
                cand = self._consider(entry, views.get(entry.job.job_id), deadline)
            except OutOfTime:
                self.ledger.defer(entry, self.clock())
                continue
            except ApiError as e:
                self.observer.warning("job details unavailable", job=str(entry.job), code=e.code)
                self._back_off(entry)
                continue
            if cand is not None:
                candidates.append(cand)
        if candidates:
            self._retry(region, candidates, deadline, report)

    def _isolate_malformed(self, region: str, entries: list[QueueEntry], deadline: Deadline,
                           report: FlushReport, e: ApiError) -> None:
        """The API refused the whole batch for one id it calls malformed (a forged notice can name
        one that our notice model accepts). Halve the batch until that id is alone, then drop it:
        it would otherwise fail every batch it rides in, and stay queued for ever."""
        if len(entries) == 1:
            entry = entries[0]
            self.ledger.finish(entry)
            self.observer.decision(job=entry.job.job_id, region=region, event=entry.event_name,
                                   failure_key=None, action="SKIP", rule="verify",
                                   reason=f"api_rejected: {e.code}"[:300], outcome="rejected")
            return
        mid = len(entries) // 2
        for half in (entries[:mid], entries[mid:]):
            slot = self._token("DescribeJobs", deadline, True)
            if slot is None:
                raise OutOfTime("DescribeJobs")
            self._flush_region(region, half, deadline, report, slot)

    def _consider(self, entry: QueueEntry, view: JobView | None, deadline: Deadline
                  ) -> _Candidate | None:
        """Verify one job and decide; returns a claimed candidate for RetryJobs, or settles it."""
        job = entry.job
        base = {"job": job.job_id, "region": job.region, "event": entry.event_name}
        if view is None:
            self.ledger.finish(entry)
            self.observer.decision(**base, failure_key=None, action="SKIP", rule="verify",
                                   reason="job not found by DescribeJobs", outcome="not_found")
            return None
        current = view.failure_key(job.region)
        for pending in self.ledger.pending(job):
            if pending != current:
                # The job left that failure: a RetryJobs whose answer we lost (or a crashed flush)
                # did reach it. Count it as done, never repeat it.
                self.ledger.confirm_retried(pending)
                self.observer.decision(**base, failure_key=str(pending), action="RETRY",
                                       rule="verify", reason="job left the failure after our call",
                                       outcome="confirmed")
        if current is None and view.bad_end_time:
            self.ledger.finish(entry)
            self.observer.decision(**base, failure_key=None, action="SKIP", rule="verify",
                                   reason=f"bad_end_time: FAILED with EndTime {view.EndTime!r}, "
                                   "not a time; the failure cannot be keyed", outcome="skipped")
            return None
        if current is None:
            self.ledger.finish(entry)
            self.observer.decision(**base, failure_key=None, action="SKIP", rule="verify",
                                   reason=f"job is {view.JobState}, not FAILED",
                                   outcome="not_failed")
            return None
        base["failure_key"] = str(current)
        now = self.clock()
        seen = self.ledger.state(current)
        if seen is not None:
            state, lease_until = seen
            if state in (FailureState.RETRIED, FailureState.SKIPPED):
                self.ledger.finish(entry)
                self.observer.decision(**base, action="SKIP", rule="dedupe",
                                       reason=f"failure already {state.lower()}", outcome="duplicate")
                return None
            if lease_until > now:
                # Claimed by a flush in progress, or awaiting a re-read after an unclear answer:
                # come back when that lease ends, in case its holder never settles it.
                self.ledger.defer(entry, lease_until + 0.001)
                self.observer.decision(**base, action="RETRY", rule="dedupe",
                                       reason=f"failure {state.lower()} under a lease",
                                       outcome="held")
                return None
        failure = Failure(key=current, job=view, history=self.ledger.history(job, deciding=current),
                          event_name=entry.event_name, event_vars=entry.event_vars, now=now)
        if self.policy.wants_details(failure):
            failure.details = self._details(job, deadline)
        decision = self.policy.decide(failure)
        for note in decision.notes:
            self.observer.warning("policy override ignored", **base, ignored=note)
        base.update(rule=decision.rule, reason=decision.reason, action=str(decision.action))
        if decision.action == Action.SKIP:
            self.ledger.record_skip(current, decision.rule, decision.reason)
            self.ledger.finish(entry)
            self.observer.decision(**base, outcome="skipped")
            return None
        due = iso_epoch(current.end_time) + decision.delay_s
        if due > now:
            self.ledger.defer(entry, due)
            self.observer.decision(**base, outcome="deferred", due_in_s=round(due - now, 3))
            return None
        if self.settings.dry_run:
            self.ledger.finish(entry)
            self.observer.decision(**base, outcome="dry_run")
            return None
        outcome = self.ledger.claim(current, decision, self.settings.lease_s)
        if outcome in (ClaimOutcome.CLAIMED, ClaimOutcome.TAKEN_OVER):
            return _Candidate(entry, current, decision, now,
                              taken_over=outcome == ClaimOutcome.TAKEN_OVER)
        self.ledger.finish(entry)
        if outcome == ClaimOutcome.DUPLICATE:
            self.observer.decision(**base, outcome="duplicate")
            return None
        reason = (decision.over_cap_reason
                  if outcome == ClaimOutcome.OVER_CAP else "budget_exhausted: fleet retry budget spent")
        self.ledger.record_skip(current, decision.rule, reason)
        self.observer.decision(**base | {"action": "SKIP", "reason": reason}, outcome=str(outcome))
        return None

    def _details(self, job: JobRef, deadline: Deadline) -> JobDetail:
        # DescribeJob, then DescribeTask per failed task; each through the shared buckets. One
        # DescribeTask token covers the usual single failed task; more are paced by the API.
        job_slot = self._token("DescribeJob", deadline, True)
        if job_slot is None:
            raise OutOfTime("details")
        try:
            task_slot = self._token("DescribeTask", deadline, True)
        except OutOfTime:
            self._done("DescribeJob", job_slot)
            raise
        if task_slot is None:
            self._done("DescribeJob", job_slot)
            raise OutOfTime("details")
        self.observer.count("api.details")
        try:
            return self._call("DescribeJob", job_slot, self.gateway.describe_job, job.region,
                              job.job_id)
        finally:
            self._done("DescribeTask", task_slot)

    def _retry(self, region: str, candidates: list[_Candidate], deadline: Deadline,
               report: FlushReport) -> None:
        if any(c.taken_over for c in candidates):
            candidates = self._reread_taken_over(region, candidates, deadline, report)
        # Jobs the service rejected before go alone, so one bad job cannot block the others.
        batches: list[list[_Candidate]] = [[c for c in candidates if c.entry.rejections == 0]]
        batches += [[c] for c in candidates if c.entry.rejections > 0]
        for batch in batches:
            if batch:
                self._retry_batch(region, batch, deadline, report)

    def _reread_taken_over(self, region: str, candidates: list[_Candidate], deadline: Deadline,
                           report: FlushReport) -> list[_Candidate]:
        """Our view of a job whose claim we took over may predate the earlier holder's call (it
        called, then was too slow to record before its lease ran out). Read those jobs again: a
        job that left the failure was retried by that call, and must not be called again."""
        over = [c for c in candidates if c.taken_over]
        slot = self._token("DescribeJobs", deadline, True)
        try:
            if slot is None:
                raise OutOfTime("DescribeJobs")
            report.api_calls += 1
            views = self._call("DescribeJobs", slot, self.gateway.describe_jobs, region,
                               [c.key.job_id for c in over])
        except (OutOfTime, ApiError):
            for c in over:  # our claim holds them until its lease ends; whoever is next re-reads
                self.ledger.defer(c.entry, c.claimed_at + self.settings.lease_s)
            return [c for c in candidates if not c.taken_over]
        keep = [c for c in candidates if not c.taken_over]
        for c in over:
            view = views.get(c.key.job_id)
            if view is not None and view.failure_key(region) == c.key:
                keep.append(c)
                continue
            self.ledger.confirm_retried(c.key)
            self.ledger.finish(c.entry)
            self.observer.decision(job=c.key.job_id, region=region, failure_key=str(c.key),
                                   event=c.entry.event_name, action="RETRY", rule="verify",
                                   reason="job left the failure after an earlier holder's call",
                                   outcome="confirmed")
        return keep

    def _retry_batch(self, region: str, batch: list[_Candidate], deadline: Deadline,
                     report: FlushReport) -> None:
        try:
            slot = self._token("RetryJobs", deadline, True)
        except OutOfTime:
            slot = None
        now = self.clock()
        # A claim is ours only while its lease lasts; never call with less than a timeout left.
        safe = [c for c in batch
                if c.claimed_at + self.settings.lease_s > now + self.gateway.timeout_s + 1]
        if slot is None or len(safe) < len(batch):
            for c in batch if slot is None else [c for c in batch if c not in safe]:
                self.ledger.release(c.key, "released: no RetryJobs token in time")
                self.ledger.defer(c.entry, self.clock())
            if slot is None:
                report.stopped = "time"
                return
            batch = safe
            if not batch:
                self._done("RetryJobs", slot)
                return
        ids = [c.key.job_id for c in batch]
        try:
            report.api_calls += 1
            request_id = self._call("RetryJobs", slot, self.gateway.retry_jobs, region, ids)
        except ApiError as e:
            self._retry_failed(batch, e)
            return
        for c in batch:
            self.ledger.record_retried(c.key)
            self.ledger.finish(c.entry)
            report.retried.append(c.key.job_id)
            self.observer.decision(job=c.key.job_id, region=region, failure_key=str(c.key),
                                   event=c.entry.event_name, action="RETRY", rule=c.decision.rule,
                                   reason=c.decision.reason, outcome="retried",
                                   request_id=request_id, batch_size=len(batch))
        self.observer.count("retries", len(batch))

    def _retry_failed(self, batch: list[_Candidate], e: ApiError) -> None:
        self.observer.count(f"api.{e.kind}")
        fields = {"code": e.code, "kind": str(e.kind), "jobs": len(batch)}
        if e.kind == ErrorKind.AMBIGUOUS:
            # It may have been applied: hold the claims, and let a re-read decide.
            self.observer.warning("RetryJobs outcome unknown; re-reading later", **fields)
            recheck = self.clock() + self.settings.recheck_s
            for c in batch:
                self.ledger.mark_ambiguous(c.key, recheck, f"ambiguous: {e.code}")
                self.ledger.defer(c.entry, recheck)
            return
        if e.kind == ErrorKind.REJECTED and len(batch) == 1:
            c = batch[0]
            reason = f"api_rejected: {e.code}: {e.message}"[:300]
            self.ledger.release(c.key, reason)
            self.ledger.record_skip(c.key, c.decision.rule, reason)
            self.ledger.finish(c.entry)
            self.observer.decision(job=c.key.job_id, region=c.key.region, failure_key=str(c.key),
                                   event=c.entry.event_name, action="SKIP", rule=c.decision.rule,
                                   reason=reason, outcome="rejected")
            return
        if e.kind == ErrorKind.REJECTED:
            # One job changed state under us; re-verify all at once, then retry the rest.
            self.observer.warning("RetryJobs rejected the batch; re-verifying", **fields)
            for c in batch:
                self.ledger.release(c.key, f"released: batch rejected ({e.code})")
                self.ledger.defer(c.entry, self.clock(), rejections=c.entry.rejections + 1)
            return
        self.observer.warning("RetryJobs not applied; backing off", **fields)
        for c in batch:
            self.ledger.release(c.key, f"released: {e.kind} ({e.code})")
            self._back_off(c.entry)

    def _back_off(self, entry: QueueEntry) -> None:
        step = entry.backoff_step + 1
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2 ** (step - 1))
        self.ledger.defer(entry, self.clock() + self.rng.uniform(0, ceiling), backoff_step=step)

    # ---- sweep ---------------------------------------------------------------------------------

    def reconcile(self, deadline: Deadline, progress: Callable[[str], None] | None = None) -> int:
        """List FAILED jobs and enqueue failures the ledger never saw (a lost notice delays a
        retry, never drops it). Returns how many were enqueued."""
        max_age = self.policy.max_failure_age_s
        in_scope = self.policy.in_scope
        found = 0
        for region in self.settings.regions:
            offset, total, listed = 0, None, 0
            while total is None or offset < total:
                # Retrying what is known comes first; listing resumes when the queue is empty.
                if self.ledger.has_due():
                    drained = self.drain(deadline)
                    # Jobs retried meanwhile left the FAILED listing and pulled every later page
                    # forward: step back as many, so no job is skipped (a job listed twice costs
                    # nothing: the ledger has seen it). Retries by other instances can still shift
                    # a page; what this misses, the next sweep lists.
                    offset = max(0, offset - len(drained.retried))
                    if drained.stopped == "time":
                        return found
                slot = self._token("DescribeJobs", deadline, True)
                if slot is None:
                    return found
                try:
                    views, total = self._call("DescribeJobs", slot, self.gateway.list_jobs, region,
                                              "FAILED", offset)
                except ApiError as e:
                    self.observer.warning("sweep listing failed", region=region, code=e.code)
                    return found
                if not views:
                    break
                offset += len(views)
                listed += len(views)
                found += self._enqueue_unseen(region, views, max_age, in_scope)
                if progress:
                    progress(f"{region}: listed {listed} FAILED jobs ({total} failed now), "
                             f"{found} new failures enqueued")
        return found

    def _enqueue_unseen(self, region: str, views: Iterable[JobView], max_age: float,
                        in_scope: Callable[[JobView], bool] | None) -> int:
        now = self.clock()
        fresh: list[tuple[JobView, FailureKey]] = []
        for v in views:
            key = v.failure_key(region)
            if key is None or now - iso_epoch(key.end_time) > max_age:
                continue
            if in_scope is not None and not in_scope(v):
                continue
            fresh.append((v, key))
        unseen = self.ledger.unseen([k for _, k in fresh])
        for v, key in fresh:
            if key in unseen:
                self.ledger.enqueue(JobRef(region, v.JobId), event_name=None, event_vars={})
                self.observer.info("sweep found an unhandled failure", job=v.JobId,
                                   failure_key=str(key))
        self.observer.count("sweep.enqueued", len(unseen))
        return len(unseen)

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
        return report
