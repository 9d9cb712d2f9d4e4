"""The queue pull: receive batches from the TDMQ-CMQ queue, put their notices in the ledger, and
delete each message only once its notice is durably there.

Never loses a message: a crash (or any failure) between receive and delete leaves the message in
the queue, visible again after the queue's visibility timeout, and the ledger absorbs the repeat.
A body that is not a Batch notice (poison) is logged on every receive with its receive count and
left alone: it is never retried and never deleted by us, and the queue's dead-letter policy moves it
aside after its `MaxReceiveCount` receives. A notice naming a region this function does not serve
(not in AUTORETRY_REGION) is left the same way, as the HTTP path refuses it: once the region is added
it is acted on at its next receive, and until then the dead-letter queue keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from handler.cmq import MAX_BATCH, QueueError, QueueMessage
from handler.gateway import MAX_IDS_PER_CALL
from handler.ingress import BadInput, accept_notices, read_notice
from handler.notices import Notice
from handler.observe import Observer
from handler.retrier import Deadline, FlushReport, Retrier

# Stop receiving when less than this is left: a batch received is hidden for the visibility
# timeout, so one we could not finish would only come back late.
MIN_TIME_FOR_A_BATCH_S = 3.0

# Puts notices in the ledger; returns, by position, those it could not act on yet with the regions
# they named that are not served.
Accept = Callable[[list[tuple[str | None, Notice]]], Mapping[int, Collection[str]]]


class QueueSource(Protocol):
    def receive(self, max_messages: int = MAX_BATCH, wait_s: int = 0) -> list[QueueMessage]: ...
    def delete(self, receipt_handles: list[str]) -> dict[str, str]: ...


@dataclass
class PullReport:
    received: int = 0  # messages received (a redelivered one counts again)
    accepted: int = 0  # messages whose notice is wholly in the ledger (so deleted, or tried)
    deleted: int = 0
    poison: int = 0  # bodies that are not Batch notices, left for the dead-letter queue
    foreign: int = 0  # notices naming a region not served, left for the dead-letter queue too
    undeleted: int = 0  # accepted, but the delete failed: they come back, and are absorbed
    batches: int = 0
    stopped: str = ""  # "empty" | "time" | "queue error" | "ledger error"
    errors: list[str] = field(default_factory=list)

    def add(self, other: PullReport) -> None:
        """Another round of the same tick: counts add up; the last round says why it stopped."""
        self.received += other.received
        self.accepted += other.accepted
        self.deleted += other.deleted
        self.poison += other.poison
        self.foreign += other.foreign
        self.undeleted += other.undeleted
        self.batches += other.batches
        self.stopped = other.stopped
        self.errors += other.errors


def pull(queue_client: QueueSource, accept: Accept, deadline: Deadline, *, observer: Observer,
         batch_size: int = MAX_BATCH, wait_s: int = 0,
         min_time_s: float = MIN_TIME_FOR_A_BATCH_S,
         between_batches: Callable[[], object] | None = None) -> PullReport:
    """Drain the queue until it is empty or the deadline is near. `accept(notices)` is the ingress's
    "enqueue in the ledger" step: durable when it returns, raising otherwise; the notices it could
    not act on yet are not deleted. `between_batches` runs after each batch is deleted (the tick
    flushes there when the API has a turn free)."""
    report = PullReport()
    while True:
        if deadline.remaining() < min_time_s + wait_s:
            report.stopped = "time"
            break
        try:
            messages = queue_client.receive(batch_size, wait_s)
        except QueueError as e:
            _stop(report, observer, "queue error", f"{e.action}: {e.code}: {e.message}")
            break
        if not messages:
            report.stopped = "empty"
            break
        report.batches += 1
        report.received += len(messages)
        notices, read = _read(messages, observer, report)
        kept: Mapping[int, Collection[str]] = {}
        if notices:
            try:
                kept = accept(notices) or {}
            except Exception as e:  # nothing is deleted: every message of the batch comes back
                _stop(report, observer, "ledger error", f"{type(e).__name__}: {e}"[:300])
                break
        for i, regions in sorted(kept.items()):
            _keep_foreign(read[i], regions, observer, report)
        handles = [msg.receipt_handle for i, msg in enumerate(read) if i not in kept]
        report.accepted += len(handles)
        if handles:
            _delete(queue_client, handles, observer, report)
        if between_batches is not None:
            try:
                between_batches()
            except Exception as e:  # this batch is in the ledger and deleted: nothing is lost
                _stop(report, observer, "ledger error", f"{type(e).__name__}: {e}"[:300])
                break
    observer.info("queue pull done", received=report.received, accepted=report.accepted,
                  deleted=report.deleted, poison=report.poison, foreign=report.foreign,
                  batches=report.batches, stopped=report.stopped)
    return report


def _read(messages: list[QueueMessage], observer: Observer, report: PullReport
          ) -> tuple[list[tuple[str | None, Notice]], list[QueueMessage]]:
    """The notices of the readable messages, and those messages, in the same order."""
    notices: list[tuple[str | None, Notice]] = []
    read: list[QueueMessage] = []
    for msg in messages:
        try:
            notice, envelope_id = read_notice(msg.body)
        except BadInput as e:
            # Deleting it would hide the evidence; retrying it cannot help. The queue's dead-letter
            # policy takes it after MaxReceiveCount receives.
            report.poison += 1
            observer.warning("poison message left for the dead-letter queue", message_id=msg.msg_id,
                             receive_count=msg.receive_count, error=str(e))
            observer.count("input.rejected")
            continue
        notices.append((msg.msg_id or envelope_id, notice))
        read.append(msg)
    return notices, read


def _keep_foreign(msg: QueueMessage, regions: Collection[str], observer: Observer,
                  report: PullReport) -> None:
    # Deleting it would drop a failure for good if AUTORETRY_REGION lacks the region by mistake;
    # kept, it is acted on at a receive after the region is added, or set aside by the queue's
    # dead-letter policy. A message that also names a served region keeps that notice in the
    # ledger meanwhile: each receive enqueues it again, and the ledger absorbs the repeat.
    report.foreign += 1
    observer.warning("message for a region not in AUTORETRY_REGION left for the dead-letter queue",
                     message_id=msg.msg_id, receive_count=msg.receive_count,
                     regions=", ".join(sorted(regions))[:200])


def _delete(queue_client: QueueSource, handles: list[str], observer: Observer,
            report: PullReport) -> None:
    try:
        failed = queue_client.delete(handles)
    except QueueError as e:
        failed = {h: f"{e.code}: {e.message}" for h in handles}
    report.deleted += len(handles) - len(failed)
    report.undeleted += len(failed)
    if failed:
        # Harmless: the notices are in the ledger; the messages come back and are absorbed then.
        observer.warning("queue messages not deleted; they will be received again",
                         count=len(failed), reason=next(iter(failed.values()))[:200])


def _stop(report: PullReport, observer: Observer, why: str, detail: str) -> None:
    report.stopped = why
    report.errors.append(detail)
    observer.error(f"queue pull stopped: {why}", error=detail)


def tick(queue_client: QueueSource, retrier: Retrier, observer: Observer, deadline: Deadline,
         regions: tuple[str, ...], *, wait_s: int = 0) -> tuple[PullReport, FlushReport]:
    """One run of the function's pull timer (and of `python -m handler pull`): pull the queue into
    the ledger, then drain what is due; and again while the queue had anything to take, until it
    is empty or time is short. Under a burst the retries start while the queue is still being read: once a
    full call's worth of notices waits, a batch is flushed whenever the API has a turn free. An
    idle tick costs one receive."""
    pulled, drained = PullReport(), FlushReport()
    waiting = 0  # notices put in the ledger since the last flush (duplicates included)

    def accept(notices: list[tuple[str | None, Notice]]) -> Mapping[int, Collection[str]]:
        """The ledger step, as ingress does it for pushes."""
        nonlocal waiting
        tally = accept_notices(retrier, notices, observer, regions)
        waiting += len(notices)
        return tally.foreign_at

    def flush_a_full_call() -> None:
        nonlocal waiting
        if waiting >= MAX_IDS_PER_CALL:
            report = retrier.flush(deadline, wait=False)
            drained.add(report)
            waiting = max(0, waiting - report.taken)

    while True:
        report = pull(queue_client, accept, deadline, observer=observer, wait_s=wait_s,
                      between_batches=flush_a_full_call)
        pulled.add(report)
        if report.errors:
            break
        report_of_drain = retrier.pump(deadline)
        drained.add(report_of_drain)
        drained.stopped = report_of_drain.stopped
        waiting = 0
        # A round that took nothing (only messages left in the queue: poison, a region not served)
        # ends the tick: reading on could only meet them again, each receive counting towards
        # their MaxReceiveCount, once a visibility timeout shorter than the tick had ended.
        if report.accepted == 0 or report.stopped == "time" or report_of_drain.stopped == "time":
            break
    return pulled, drained
