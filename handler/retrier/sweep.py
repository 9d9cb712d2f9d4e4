"""The sweep: walk the FAILED listing and enqueue failures the ledger never saw, so a lost notice
delays a retry but never drops it.

DescribeJobs' order is undocumented and an account may hold tens of thousands of FAILED jobs, more
than one sweep can list at 2 calls/s. So a sweep:

- lists the first page: if the API lists newest first, a lost notice is found by the next timer;
- then walks on from the region's cursor in the ledger (one sweeper at a time; a cold instance
  continues where the last sweep stopped) to the end of the listing and on from offset 0 again,
  listing each page at most once per sweep: a lost notice is found within one pass, whatever the
  order. It resumes a page back (`STEP_BACK`): jobs that left FAILED meanwhile pulled later pages
  forward, and a job listed twice costs nothing;
- retries what is due first, and while any flush is queued or in flight it takes at most every
  other DescribeJobs turn, which the flushes share;
- once a whole pass listed EndTimes oldest first, also lists the end of the listing, from the last
  page back while its jobs are younger than the policy's `max_failure_age` (`TAIL_PAGES` at most):
  a fresh failure is found by the next timer there too. The walk itself never skips a page: the
  order of pages it did not list is unknown (by creation, a job created long ago that fails now
  lists among old ones), and any page out of order drops the belief at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from handler.gateway import MAX_IDS_PER_CALL, ApiError
from handler.jobs import FailureKey, JobRef, JobView, iso_epoch
from handler.ledger import Ledger
from handler.ledger.cursor import SweepCursor
from handler.observe import Observer
from handler.policy import Policy
from handler.retrier.flush import FlushReport, Gateway
from handler.retrier.heartbeat import Heartbeat
from handler.retrier.pacing import Deadline, OutOfTime, Pacer
from handler.retrier.settings import Settings

Drain = Callable[[Deadline], FlushReport]

STEP_BACK = MAX_IDS_PER_CALL  # a resumed walk lists this many jobs again
TAIL_PAGES = 5  # pages listed from the end of an oldest-first listing per sweep, at most
PASS_TARGET_S = 600.0  # a lost notice is found within one pass: warn when a pass takes longer


class _Stop(Exception):
    """The walk ends here: out of time, the listing failed, or another sweeper took the walk."""


@dataclass
class _Page:
    offset: int
    views: list[JobView]
    total: int


class Sweeper:
    def __init__(self, ledger: Ledger, gateway: Gateway, policy: Policy, settings: Settings,
                 observer: Observer, pacer: Pacer, clock: Callable[[], float] = time.time) -> None:
        self.ledger, self.gateway, self.policy = ledger, gateway, policy
        self.settings, self.observer, self.pacer = settings, observer, pacer
        self.clock = clock

    def reconcile(self, deadline: Deadline, drain: Drain,
                  progress: Callable[[str], None] | None = None) -> int:
        """Walk each region's FAILED listing and enqueue failures the ledger never saw. Retrying
        what is known comes first (`drain`). Returns how many were enqueued."""
        found = 0
        regions = self.settings.regions
        for i, region in enumerate(regions):
            # An equal share of what is left, so a crowded region cannot starve the next one.
            share = Deadline(min(deadline.at, deadline.clock() + deadline.remaining() /
                                 (len(regions) - i)), deadline.clock)
            walk = _Walk(self, region, share, drain, progress)
            walk.run()
            found += walk.found
        return found

    # ---- what one page yields ------------------------------------------------------------------

    def enqueue_unseen(self, region: str, views: Iterable[JobView]) -> int:
        now = self.clock()
        fresh: list[tuple[JobView, FailureKey]] = []
        for v in views:
            key = v.failure_key(region)
            if key is None or now - iso_epoch(key.end_time) > self.policy.max_failure_age_s:
                continue
            if not self.policy.in_scope(v):
                continue
            fresh.append((v, key))
        unseen = self.ledger.unseen([k for _, k in fresh], self.settings.refail_after_s)
        for v, key in fresh:
            if key in unseen:
                self.ledger.enqueue(JobRef(region, v.JobId), event_name=None, event_vars={})
                self.observer.info("sweep found an unhandled failure", job=v.JobId,
                                   failure_key=str(key))
        self.observer.count("sweep.enqueued", len(unseen))
        return len(unseen)


def _ends(views: Sequence[JobView]) -> list[float]:
    """The EndTimes of a page, in its order (jobs without one say nothing of the order)."""
    out: list[float] = []
    for v in views:
        if v.EndTime:
            try:
                out.append(iso_epoch(v.EndTime))
            except ValueError:
                continue
    return out


class _Walk:
    """One sweep of one region: the first page, then on from the cursor while time lasts."""

    def __init__(self, sweeper: Sweeper, region: str, deadline: Deadline, drain: Drain,
                 progress: Callable[[str], None] | None) -> None:
        self.s, self.region, self.drain = sweeper, region, drain
        # Listing stops while a drain still fits after it, so what the last page found is retried
        # by this sweep, not the next one.
        self.deadline = deadline
        self.listing = Deadline(deadline.at - sweeper.pacer.call_timeout_s - 1.0, deadline.clock)
        self.progress = progress
        self.found = 0
        self.listed = 0
        self.cursor: SweepCursor | None = None
        self.last: _Page | None = None  # the page listed just before, if nothing shifted since
        self.called_at: float | None = None  # when this walk's last DescribeJobs turn came
        self.disordered = False  # a page listed EndTimes out of oldest-first order

    def run(self) -> None:
        s = self.s
        try:
            first = self._list(0)
        except _Stop:
            return
        self.cursor = s.ledger.take_walk(self.region, self._lease_s())
        if self.cursor is None:
            s.observer.count("sweep.walk_busy")  # another sweeper walks this region now
            return
        if self.disordered:  # the first page, listed before the walk was ours, showed it
            self.cursor = replace(self.cursor, ascending=False, ascending_so_far=False)
        lease_s, holder = self._lease_s(), s.ledger.holder
        try:
            # The walk's lease is short and renewed while it runs: a sweeper that dies leaves the
            # region's walk to the next timer within `lease_s`.
            with Heartbeat(lambda: s.ledger.renew_walk(self.region, lease_s, holder), lease_s,
                           s.observer, "sweep walk"):
                self._walk(first)
        except _Stop:
            pass
        finally:
            if self.cursor is not None:
                s.ledger.release_walk(self.cursor)

    def _walk(self, first: _Page) -> None:
        assert self.cursor is not None
        cur = self.cursor
        if cur.offset == 0:  # a new pass, whose first page is listed
            self._set(replace(cur, pass_started_at=self.s.clock(), ascending_so_far=True))
            offset = len(first.views)
            if offset >= first.total:
                self._end_pass(first.total)
                return
        else:
            offset = max(0, cur.offset - STEP_BACK)
            self.last = None
        self._look_at_the_end(first)
        start, wrapped = offset, False
        # Each page at most once per sweep: on from the cursor, and after the end from the top
        # down to where this sweep began.
        while not (wrapped and offset >= start):
            offset = self._before_page(offset)
            page = self._list(offset)
            if not page.views or page.offset + len(page.views) >= page.total:
                self._end_pass(page.total)
                if wrapped:
                    return
                wrapped, offset = True, len(first.views)
                self.last = None
                continue
            offset = page.offset + len(page.views)
            self._save(offset)

    # ---- pacing: flushes first -----------------------------------------------------------------

    def _before_page(self, offset: int) -> int:
        """Retry what is due first; while a flush is in flight elsewhere, leave it the next turn."""
        s = self.s
        if s.ledger.has_due():
            drained = self.drain(self.deadline)
            # Jobs retried meanwhile left the FAILED listing and pulled later pages forward: step
            # back as many (a job listed twice costs nothing: the ledger has seen it).
            if drained.retried:
                offset = max(0, offset - len(drained.retried))
                self.last = None
            if drained.stopped == "time":
                raise _Stop
        self._yield()
        return offset

    def _yield(self) -> None:
        """While a flush is queued or in flight, leave it the turn after our last one: wait
        until two turns have passed since our last call (any entry due within a lease counts:
        a taken entry is leased, and its flush is under way)."""
        s = self.s
        if self.called_at is None or s.ledger.next_due(s.settings.lease_s + 1.0) is None:
            return
        wait = self.called_at + 2.0 / s.settings.rates["DescribeJobs"] - s.clock()
        if wait > 0:
            s.observer.count("sweep.yielded")
            s.pacer.sleep(wait)

    # ---- listing -------------------------------------------------------------------------------

    def _list(self, offset: int, limit: int = MAX_IDS_PER_CALL) -> _Page:
        s = self.s
        try:
            if not self.listing.fits(s.pacer.call_timeout_s):
                raise OutOfTime("DescribeJobs")
            with s.pacer.turn("DescribeJobs", self.listing):
                self.called_at = s.clock()
                views, total = s.gateway.list_jobs(self.region, "FAILED", offset, limit)
        except OutOfTime:
            raise _Stop from None
        except ApiError as e:
            s.observer.warning("sweep listing failed", region=self.region, code=e.code)
            raise _Stop from None
        page = _Page(offset, views, total)
        if limit == MAX_IDS_PER_CALL:
            s.observer.count("sweep.pages")
            self._check_order(page)
            self.listed += len(views)
            self.found += s.enqueue_unseen(self.region, views)
            self.last = page
            if self.progress:
                self.progress(f"{self.region}: listed {self.listed} FAILED jobs ({total} failed "
                              f"now), {self.found} new failures enqueued")
        return page

    def _check_order(self, page: _Page) -> None:
        """Any page whose EndTimes are not oldest first (or that begins before the page just
        before it ended) proves the listing is not in that order: its end is not looked at."""
        ends = _ends(page.views)
        before = _ends(self.last.views) if self.last and \
            self.last.offset + len(self.last.views) == page.offset else []
        seq = before[-1:] + ends
        if all(a <= b for a, b in pairwise(seq)):
            return
        self.disordered = True
        cur = self.cursor
        if cur is not None and (cur.ascending or cur.ascending_so_far):
            self._set(replace(cur, ascending=False, ascending_so_far=False))

    # ---- the newest failures of an oldest-first listing -----------------------------------------

    def _look_at_the_end(self, first: _Page) -> None:
        """Once a whole pass proved the listing oldest first, its newest failures are on its last
        pages: list them, from the end back while they are younger than the policy's max age.
        The cursor does not move: the walk still lists every page in its turn."""
        cur = self.cursor
        if cur is None or not cur.ascending or first.total <= len(first.views):
            return
        cutoff = self.s.clock() - self.s.policy.max_failure_age_s
        end = first.total
        for _ in range(TAIL_PAGES):
            start = max(len(first.views), end - MAX_IDS_PER_CALL)
            if start >= end:
                return
            self.last = None
            self._yield()
            page = self._list(start)
            ends = _ends(page.views)
            if not ends or ends[0] < cutoff or self.disordered:
                break  # older than max age from here back, or not oldest first after all
            end = start
        self.last = None

    # ---- the cursor ----------------------------------------------------------------------------

    def _save(self, offset: int) -> None:
        assert self.cursor is not None
        cur = replace(self.cursor, offset=offset)
        if not self.s.ledger.move_walk(cur, self._lease_s()):
            self.cursor = None  # another sweeper holds the walk now: leave the cursor to it
            raise _Stop
        self.cursor = cur

    def _set(self, cur: SweepCursor) -> None:
        self.cursor = cur

    def _end_pass(self, total: int) -> None:
        assert self.cursor is not None
        cur, now = self.cursor, self.s.clock()
        took = now - cur.pass_started_at if cur.pass_started_at else None
        self.cursor = replace(cur, offset=0, passes=cur.passes + 1, last_pass_s=took,
                              ascending=cur.ascending_so_far, ascending_so_far=True,
                              pass_started_at=now)
        self.s.observer.count("sweep.passes")
        self.s.observer.info("sweep pass complete", region=self.region, failed_jobs=total,
                             seconds=round(took, 1) if took is not None else None)
        if took is not None and took > PASS_TARGET_S:
            self.s.observer.warning("sweep pass slower than its target: a lost notice may wait "
                                    "longer; run the timer more often or longer",
                                    region=self.region, seconds=round(took), failed_jobs=total)
        self._save(0)

    def _lease_s(self) -> float:
        return self.s.settings.renewed_lease_s
