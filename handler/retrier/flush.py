"""One group commit: up to 100 due jobs, one DescribeJobs, the policy, one RetryJobs.

    take ≤100 due entries ─► DescribeJobs ─► verify against the ledger (one read) ─► policy.decide
    ─► claims (one commit) ─► RetryJobs ─► record the outcome (one commit)

The ledger's work is batched: a batch of 100 jobs costs a handful of store round trips, not one
per job and step.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from handler.gateway import MAX_IDS_PER_CALL, ApiError, ErrorKind
from handler.jobs import FailureKey, JobDetail, JobRef, JobView, iso_epoch
from handler.ledger import ClaimOutcome, Ledger, Look, QueueEntry, Step
from handler.ledger.records import with_generation
from handler.observe import Observer
from handler.outcomes import GIVE_UP_OUTCOMES, Outcome
from handler.policy import BUDGET, Action, Failure, JobHistory, Policy, RetryDecision
from handler.retrier.pacing import Deadline, NoTurn, OutOfTime, Pacer
from handler.retrier.settings import Settings
from handler.retrier.verify import Decided, check, confirmed_line, log_decision
from handler.tags import TagMemory, spent_on

if TYPE_CHECKING:
    from handler.notify import Announcer


class Gateway(Protocol):
    timeout_s: float

    def describe_jobs(self, region: str, job_ids: list[str]) -> dict[str, JobView]: ...
    def list_jobs(self, region: str, state: str, offset: int, limit: int = ...
                  ) -> tuple[list[JobView], int]: ...
    def describe_job(self, region: str, job_id: str) -> JobDetail: ...
    def retry_jobs(self, region: str, job_ids: list[str]) -> str: ...


# DescribeJobs refuses a whole batch when one id is not in the API's format.
MALFORMED_ID = "InvalidParameter.JobIdMalformed"


@dataclass
class FlushReport:
    taken: int = 0
    retried: list[str] = field(default_factory=list)
    api_calls: int = 0
    stopped: str | None = None  # why the drain stopped early: "time", "idle", "busy"
    left_due: bool = False  # work was waiting when the drainer left (see Retrier.pump)

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
    spent_after: int = 0  # the job's budget spent once this retry is made (for its tag)


class Flusher:
    def __init__(self, ledger: Ledger, gateway: Gateway, policy: Policy, settings: Settings,
                 observer: Observer, pacer: Pacer, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, tags: TagMemory | None = None,
                 announcer: Announcer | None = None) -> None:
        self.ledger, self.gateway, self.policy = ledger, gateway, policy
        self.settings, self.observer, self.pacer = settings, observer, pacer
        self.tags, self.announcer = tags, announcer
        self.clock = clock
        self.rng = rng or random.Random()

    def flush(self, deadline: Deadline, wait: bool = False, known: set[str] | None = None
              ) -> FlushReport:
        """One group commit. With `wait` False it gives up at once when the API's turn is taken by
        another instance. `known`: queue keys to look at besides the due index (see
        `DueQueue.take`)."""
        report = FlushReport()
        # Each call checks again that it still fits; a flush starts if one does.
        if not deadline.fits(self.gateway.timeout_s + 1):
            report.stopped = "time"
            return report
        if not self.ledger.has_due(known):
            report.stopped = "idle"
            return report
        by_region: dict[str, list[QueueEntry]] = defaultdict(list)
        try:
            with self.pacer.turn("DescribeJobs", deadline, wait):
                entries = self.ledger.take(MAX_IDS_PER_CALL, self.settings.lease_s, known)
                report.taken = len(entries)
                if not entries:
                    report.stopped = "idle"
                    return report
                for e in entries:
                    by_region[e.job.region].append(e)
                region, group = next(iter(by_region.items()))
                views = self._describe(region, group, report)
        except OutOfTime as e:
            report.stopped = _stop_reason(e)
            return report
        regions = list(by_region.items())
        for i, (region, group) in enumerate(regions):
            try:
                if i > 0:
                    with self.pacer.turn("DescribeJobs", deadline):
                        views = self._describe(region, group, report)
                self._verify(region, group, views, deadline, report)
            except OutOfTime as stop:
                self._apply([self.ledger.defer_step(e, self.clock()) for e in group])
                report.stopped = _stop_reason(stop)
        return report

    def _describe(self, region: str, entries: list[QueueEntry], report: FlushReport
                  ) -> dict[str, JobView] | ApiError:
        report.api_calls += 1
        try:
            return self.gateway.describe_jobs(region, [e.job.job_id for e in entries])
        except ApiError as e:
            return e

    def _apply(self, steps: list[Step]) -> list[object]:
        return self.ledger.apply(steps) if steps else []

    # ---- verification and decisions ------------------------------------------------------------

    def _verify(self, region: str, entries: list[QueueEntry], views: dict[str, JobView] | ApiError,
                deadline: Deadline, report: FlushReport) -> None:
        if isinstance(views, ApiError):
            if views.code.startswith(MALFORMED_ID):
                self._isolate_malformed(region, entries, deadline, report, views)
                return
            self.observer.warning("DescribeJobs failed", region=region, code=views.code,
                                  kind=views.kind)
            self.observer.count(f"api.{views.kind}")
            self._apply([self._back_off(e) for e in entries])
            return
        now = self.clock()
        current = {e.job: views.get(e.job.job_id) for e in entries}
        looks = self.ledger.look([(job, v.failure_key(region) if v else None)
                                  for job, v in current.items()])
        steps: list[Step] = []
        ended: list[tuple[QueueEntry, Decided]] = []
        claims: list[tuple[QueueEntry, FailureKey, RetryDecision, int]] = []
        for entry in entries:
            view, look = current[entry.job], looks.get(entry.job)
            checked = check(entry, view, look, now, self.settings.refail_after_s)
            if checked.refailed:
                self.observer.count("failures.refailed_same_end_time")
                self.observer.warning("job failed again keeping the EndTime of the failure we "
                                      "retried; treating it as a new failure", job=str(entry.job),
                                      failure_key=str(checked.failure))
            for key in checked.confirmed:
                steps.append(self.ledger.confirmed_step(key))
                confirmed_line(self.observer, entry, key, "job left the failure after our call")
            decided = checked.decided
            if decided is None:
                assert checked.failure is not None and view is not None and look is not None
                decision: RetryDecision | None
                # The job's own tags remember its spend where the ledger may have forgotten it.
                floor = spent_on(view.Tags)
                spent = dict(look.spent.counters)
                spent[BUDGET] = max(spent.get(BUDGET, 0), floor)
                try:
                    decided, decision = self._decide(entry, checked.failure, view, spent, deadline,
                                                     now)
                except OutOfTime:
                    steps.append(self.ledger.defer_step(entry, self.clock()))
                    continue
                except ApiError as e:
                    self.observer.warning("job details unavailable", job=str(entry.job), code=e.code)
                    steps.append(self._back_off(entry))
                    continue
                if decision is not None:
                    claims.append((entry, checked.failure, decision, floor))
                    continue
            assert decided is not None
            self._announce(entry, decided, view, look)
            steps += self._end_steps(entry, decided)
            ended.append((entry, decided))
        claimed = self._apply(steps + [self.ledger.claim_step(k, d, self.settings.lease_s, floor)
                                       for _, k, d, floor in claims])[len(steps):]
        for entry, decided in ended:
            log_decision(self.observer, entry, decided)
        candidates: list[_Candidate] = []
        after: list[Step] = []
        for (entry, key, decision, floor), outcome in zip(claims, claimed, strict=True):
            if outcome in (ClaimOutcome.CLAIMED, ClaimOutcome.TAKEN_OVER):
                before = max(looks[entry.job].spent.spent(BUDGET), floor)
                fresh = outcome == ClaimOutcome.CLAIMED and decision.counter == BUDGET
                candidates.append(_Candidate(entry, key, decision, now,
                                             taken_over=outcome == ClaimOutcome.TAKEN_OVER,
                                             spent_after=before + (1 if fresh else 0)))
                continue
            if outcome == ClaimOutcome.HELD:
                # Held since this flush's look: the claim kept the failure as held, no call.
                hold = self.ledger.hold_on(entry.job)
                after.append(self.ledger.finish_step(entry))
                log_decision(self.observer, entry, Decided(
                    Outcome.HELD, "SKIP", "hold", hold.reason if hold else "held by the operator",
                    key))
                continue
            decided = self._refused(key, decision, ClaimOutcome(str(outcome)))
            self._announce(entry, decided, current[entry.job], looks[entry.job])
            after += self._end_steps(entry, decided)
            log_decision(self.observer, entry, decided)
        self._apply(after)
        if candidates:
            self.ledger.wait_durable()  # a failover must not lose a claim whose call is made
            self._retry(region, candidates, deadline, report)

    def _decide(self, entry: QueueEntry, key: FailureKey, view: JobView, spent: dict[str, int],
                deadline: Deadline, now: float) -> tuple[Decided, None] | tuple[None, RetryDecision]:
        """Ask the policy. Returns how the entry ends now, or the RETRY decision to claim."""
        base = with_generation(key, 0)  # the policy sees the failure as the API reports it
        failure = Failure(key=base, job=view, history=JobHistory(counters=dict(spent)),
                          event_name=entry.event_name, event_vars=entry.event_vars, now=now,
                          said=_said_of(entry, key))
        if self.policy.wants_details(failure):
            failure.details = self._details(entry.job, deadline)
        decision = self.policy.decide(failure)
        for note in decision.notes:
            self.observer.warning("policy override ignored", job=entry.job.job_id,
                                  region=entry.job.region, failure_key=str(key), ignored=note)
        rule, reason = decision.rule, decision.reason
        if decision.action == Action.SKIP:
            return Decided(Outcome.SKIPPED, "SKIP", rule, reason, key), None
        due = iso_epoch(base.end_time) + decision.delay_s
        if due > now:
            return Decided(Outcome.DEFERRED, "RETRY", rule, reason, key, due_at=due,
                           extra={"due_in_s": round(due - now, 3)}), None
        if self.settings.dry_run:
            return Decided(Outcome.DRY_RUN, "RETRY", rule, reason, key), None
        return None, decision

    @staticmethod
    def _refused(key: FailureKey, decision: RetryDecision, outcome: ClaimOutcome) -> Decided:
        """The ledger refused the claim: a duplicate, or a cap reached (checked there, atomically)."""
        if outcome == ClaimOutcome.DUPLICATE:
            return Decided(Outcome.DUPLICATE, "RETRY", decision.rule, decision.reason, key)
        if outcome == ClaimOutcome.OVER_CAP:
            return Decided(Outcome.MAX_ATTEMPTS, "SKIP", decision.rule, decision.over_cap_reason, key)
        return Decided(Outcome.BUDGET_EXHAUSTED, "SKIP", decision.rule,
                       "budget_exhausted: fleet retry budget spent", key)

    def _announce(self, entry: QueueEntry, d: Decided, view: JobView | None, look: Look | None,
                  spent: int | None = None) -> None:
        """A failure given up gets one message to the operators' channels, kept in the outbox
        BEFORE the failure is settled: a crash between the two re-decides and keeps it again,
        which the outbox absorbs (handler.notify)."""
        if self.announcer is None or d.key is None or d.outcome not in GIVE_UP_OUTCOMES:
            return
        if spent is None:
            spent = look.spent.spent(BUDGET) if look is not None else 0
        if view is not None:
            spent = max(spent, spent_on(view.Tags))
        self.announcer.give_up(d.key, outcome=str(d.outcome), reason=d.reason,
                               rule=d.rule, retries_spent=max(0, spent),
                               job_name=view.JobName if view is not None else None)

    def _end_steps(self, entry: QueueEntry, d: Decided) -> list[Step]:
        """What the ledger keeps of a decision that ends this entry's turn."""
        if d.due_at is not None:
            return [self.ledger.defer_step(entry, d.due_at)]
        steps = [self.ledger.finish_step(entry)]
        if d.key is not None and d.outcome == Outcome.HELD:
            steps.insert(0, self.ledger.held_step(d.key, d.reason))
        elif d.key is not None and d.outcome in GIVE_UP_OUTCOMES:
            steps.insert(0, self.ledger.skip_step(d.key, d.rule, d.reason, str(d.outcome)))
        elif d.key is None or d.outcome in (Outcome.NOT_FAILED, Outcome.DUPLICATE):
            steps.insert(0, self.ledger.note_step(entry.job, d.key, str(d.outcome), d.rule, d.reason))
        return steps

    def _details(self, job: JobRef, deadline: Deadline) -> JobDetail:
        # DescribeJob, then DescribeTask per failed task; each through the shared turns. One
        # DescribeTask turn covers the usual single failed task; more are paced by the API.
        self.observer.count("api.details")
        with self.pacer.turn("DescribeJob", deadline), self.pacer.turn("DescribeTask", deadline):
            return self.gateway.describe_job(job.region, job.job_id)

    def _isolate_malformed(self, region: str, entries: list[QueueEntry], deadline: Deadline,
                           report: FlushReport, e: ApiError) -> None:
        """The API refused the whole batch for one id it calls malformed (a forged notice can name
        one that our notice model accepts). Halve the batch until that id is alone, then drop it:
        it would otherwise fail every batch it rides in, and stay queued for ever."""
        if len(entries) == 1:
            entry = entries[0]
            self._apply([self.ledger.finish_step(entry)])
            log_decision(self.observer, entry, Decided(Outcome.REJECTED, "SKIP", "verify",
                                                       f"api_rejected: {e.code}"[:300]))
            return
        mid = len(entries) // 2
        for half in (entries[:mid], entries[mid:]):
            with self.pacer.turn("DescribeJobs", deadline):
                views = self._describe(region, half, report)
            self._verify(region, half, views, deadline, report)

    # ---- the call ------------------------------------------------------------------------------

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
        keep = [c for c in candidates if not c.taken_over]
        try:
            with self.pacer.turn("DescribeJobs", deadline):
                report.api_calls += 1
                views = self.gateway.describe_jobs(region, [c.key.job_id for c in over])
        except (OutOfTime, ApiError):
            # our claim holds them until its lease ends; whoever is next re-reads
            self._apply([self.ledger.defer_step(c.entry, c.claimed_at + self.settings.lease_s)
                         for c in over])
            return keep
        steps: list[Step] = []
        for c in over:
            view = views.get(c.key.job_id)
            if view is not None and view.failure_key(region) == with_generation(c.key, 0):
                keep.append(c)
                continue
            steps += [self.ledger.confirmed_step(c.key), self.ledger.finish_step(c.entry)]
            confirmed_line(self.observer, c.entry, c.key,
                           "job left the failure after an earlier holder's call")
        self._apply(steps)
        return keep

    def _retry_batch(self, region: str, batch: list[_Candidate], deadline: Deadline,
                     report: FlushReport) -> None:
        # A claim is ours only while its lease lasts; never call with less than a timeout left.
        try:
            with self.pacer.turn("RetryJobs", deadline):
                now = self.clock()
                safe = [c for c in batch
                        if c.claimed_at + self.settings.lease_s > now + self.gateway.timeout_s + 1]
                self._give_back([c for c in batch if c not in safe], "no RetryJobs turn in time")
                if not safe:
                    return
                batch = safe
                report.api_calls += 1
                request_id = self.gateway.retry_jobs(region, [c.key.job_id for c in batch])
        except OutOfTime as e:
            self._give_back(batch, "no RetryJobs turn in time")
            report.stopped = _stop_reason(e)
            return
        except ApiError as e:
            self._retry_failed(batch, e)
            return
        steps: list[Step] = []
        for c in batch:
            steps += [self.ledger.retried_step(c.key), self.ledger.finish_step(c.entry)]
        self._apply(steps)
        if self.tags is not None:  # written on a thread of its own: the next call does not wait
            self.tags.remember(region, {c.key.job_id: c.spent_after for c in batch})
        for c in batch:
            report.retried.append(c.key.job_id)
            log_decision(self.observer, c.entry, Decided(
                Outcome.RETRIED, "RETRY", c.decision.rule, c.decision.reason, c.key,
                extra={"request_id": request_id, "batch_size": len(batch)}))
        self.observer.count("retries", len(batch))

    def _give_back(self, batch: list[_Candidate], why: str) -> None:
        """Claims whose call was certainly not made: refund them, and look again now."""
        self._apply([s for c in batch for s in (self.ledger.release_step(c.key, f"released: {why}"),
                                                self.ledger.defer_step(c.entry, self.clock()))])

    def _retry_failed(self, batch: list[_Candidate], e: ApiError) -> None:
        self.observer.count(f"api.{e.kind}")
        fields = {"code": e.code, "kind": str(e.kind), "jobs": len(batch)}
        if e.kind == ErrorKind.AMBIGUOUS:
            # It may have been applied: hold the claims, and let a re-read decide.
            self.observer.warning("RetryJobs outcome unknown; re-reading later", **fields)
            recheck = self.clock() + self.settings.recheck_s
            self._apply([s for c in batch for s in (
                self.ledger.ambiguous_step(c.key, recheck, f"ambiguous: {e.code}"),
                self.ledger.defer_step(c.entry, recheck))])
            return
        if e.kind == ErrorKind.REJECTED and len(batch) == 1:
            c = batch[0]
            reason = f"api_rejected: {e.code}: {e.message}"[:300]
            decided = Decided(Outcome.REJECTED, "SKIP", c.decision.rule, reason, c.key)
            self._announce(c.entry, decided, None, None, spent=c.spent_after - 1)
            self._apply([self.ledger.release_step(c.key, reason), *self._end_steps(c.entry, decided)])
            log_decision(self.observer, c.entry, decided)
            return
        if e.kind == ErrorKind.REJECTED:
            # One job changed state under us. Tencent does not say whether the other ids of a
            # refused call were retried, so the call is unclear: hold every claim and re-read the
            # jobs now. A job that left its failure was retried by this call (confirmed, its spend
            # kept); one still FAILED is called again, alone.
            self.observer.warning("RetryJobs refused the batch; re-reading its jobs", **fields)
            now = self.clock()
            self._apply([s for c in batch for s in (
                self.ledger.ambiguous_step(c.key, now, f"ambiguous: batch refused ({e.code})"),
                self.ledger.defer_step(c.entry, now, rejections=c.entry.rejections + 1))])
            return
        self.observer.warning("RetryJobs not applied; backing off", **fields)
        self._apply([s for c in batch for s in (
            self.ledger.release_step(c.key, f"released: {e.kind} ({e.code})"), self._back_off(c.entry))])

    def _back_off(self, entry: QueueEntry) -> Step:
        step = entry.backoff_step + 1
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2 ** (step - 1))
        return self.ledger.defer_step(entry, self.clock() + self.rng.uniform(0, ceiling),
                                      backoff_step=step)


def _stop_reason(e: OutOfTime) -> str:
    """`busy` when the API's turns were all another instance's (`NoTurn`): this invocation still
    has time, and whoever drains looks again; `time` when this invocation's own time ran out."""
    return "busy" if isinstance(e, NoTurn) else "time"


def _said_of(entry: QueueEntry, key: FailureKey) -> str | None:
    """The StateReason a notice gave, if it was for this failure: the one whose EndTime it named
    (within a second), or, if it named none, the failure the job is in now."""
    if entry.said_reason is None or entry.said_end is None:
        return entry.said_reason
    try:
        same = abs(iso_epoch(key.end_time) - entry.said_end) < 1.0
    except ValueError:
        return None
    return entry.said_reason if same else None
