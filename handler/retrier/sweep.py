"""The sweep: list FAILED jobs and enqueue failures the ledger never saw, so a lost notice delays a
retry but never drops it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from handler.gateway import ApiError
from handler.jobs import FailureKey, JobRef, JobView, iso_epoch
from handler.ledger import Ledger
from handler.observe import Observer
from handler.policy import Policy
from handler.retrier.flush import FlushReport, Gateway
from handler.retrier.pacing import Deadline, OutOfTime, Pacer
from handler.retrier.settings import Settings

Drain = Callable[[Deadline], FlushReport]


class Sweeper:
    def __init__(self, ledger: Ledger, gateway: Gateway, policy: Policy, settings: Settings,
                 observer: Observer, pacer: Pacer, clock: Callable[[], float] = time.time) -> None:
        self.ledger, self.gateway, self.policy = ledger, gateway, policy
        self.settings, self.observer, self.pacer = settings, observer, pacer
        self.clock = clock

    def reconcile(self, deadline: Deadline, drain: Drain,
                  progress: Callable[[str], None] | None = None) -> int:
        """List FAILED jobs and enqueue failures the ledger never saw. Retrying what is known
        comes first (`drain`); listing resumes when the queue is empty. Returns how many were
        enqueued."""
        found = 0
        for region in self.settings.regions:
            offset, total, listed = 0, None, 0
            while total is None or offset < total:
                if self.ledger.has_due():
                    drained = drain(deadline)
                    # Jobs retried meanwhile left the FAILED listing and pulled every later page
                    # forward: step back as many, so no job is skipped (a job listed twice costs
                    # nothing: the ledger has seen it). Retries by other instances can still shift
                    # a page; what this misses, the next sweep lists.
                    offset = max(0, offset - len(drained.retried))
                    if drained.stopped == "time":
                        return found
                try:
                    with self.pacer.turn("DescribeJobs", deadline):
                        views, total = self.gateway.list_jobs(region, "FAILED", offset)
                except OutOfTime:
                    return found
                except ApiError as e:
                    self.observer.warning("sweep listing failed", region=region, code=e.code)
                    return found
                if not views:
                    break
                offset += len(views)
                listed += len(views)
                found += self._enqueue_unseen(region, views)
                if progress:
                    progress(f"{region}: listed {listed} FAILED jobs ({total} failed now), "
                             f"{found} new failures enqueued")
        return found

    def _enqueue_unseen(self, region: str, views: Iterable[JobView]) -> int:
        now = self.clock()
        fresh: list[tuple[JobView, FailureKey]] = []
        for v in views:
            key = v.failure_key(region)
            if key is None or now - iso_epoch(key.end_time) > self.policy.max_failure_age_s:
                continue
            if not self.policy.in_scope(v):
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
