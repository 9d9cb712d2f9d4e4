"""The queue pull: receive batches from the TDMQ-CMQ queue, put their notices in the ledger, and
delete each message only once its notice is durably there.

Never loses a message: a crash (or any failure) between receive and delete leaves the message in
the queue, visible again after the queue's visibility timeout, and the ledger absorbs the repeat.
A body that is not a Batch notice (poison) is logged on every receive with its receive count and
left alone: it is never retried and never deleted by us, and the queue's dead-letter policy moves it
aside after its `MaxReceiveCount` receives.
"""

from __future__ import annotations

from collections.abc import Callable
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

Accept = Callable[[list[tuple[str | None, Notice]]], None]


class QueueSource(Protocol):
    def receive(self, max_messages: int = MAX_BATCH, wait_s: int = 0) -> list[QueueMessage]: ...
    def delete(self, receipt_handles: list[str]) -> dict[str, str]: ...


@dataclass
class PullReport:
    received: int = 0  # messages received (a redelivered one counts again)
    accepted: int = 0  # messages whose notice is in the ledger
    deleted: int = 0
    poison: int = 0  # bodies that are not Batch notices, left for the dead-letter queue
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
        self.undeleted += other.undeleted
        self.batches += other.batches
        self.stopped = other.stopped
        self.errors += other.errors


def pull(queue_client: QueueSource, accept: Accept, deadline: Deadline, *, observer: Observer,
         batch_size: int = MAX_BATCH, wait_s: int = 0,
         min_time_s: float = MIN_TIME_FOR_A_BATCH_S,
         between_batches: Callable[[], object] | None = None) -> PullReport:
    """Drain the queue until it is empty or the deadline is near. `accept(notices)` is the ingress's
    "enqueue in the ledger" step: durable when it returns, raising otherwise. `between_batches`
    runs after each batch is deleted (the tick flushes there when the API has a turn free)."""
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
        notices, handles = _read(messages, observer, report)
        if notices:
            try:
                accept(notices)
            except Exception as e:  # nothing is deleted: every message of the batch comes back
                _stop(report, observer, "ledger error", f"{type(e).__name__}: {e}"[:300])
                break
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
                  deleted=report.deleted, poison=report.poison, batches=report.batches,
                  stopped=report.stopped)
    return report


def _read(messages: list[QueueMessage], observer: Observer, report: PullReport
          ) -> tuple[list[tuple[str | None, Notice]], list[str]]:
    notices: list[tuple[str | None, Notice]] = []
    handles: list[str] = []
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
        handles.append(msg.receipt_handle)
    return notices, handles


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
    the ledger, then drain what is due; and again while the queue had anything, until it is empty
    or time is short. Under a burst the retries start while the queue is still being read: once a
    full call's worth of notices waits, a batch is flushed whenever the API has a turn free. An
    idle tick costs one receive."""
    pulled, drained = PullReport(), FlushReport()
    waiting = 0  # notices put in the ledger since the last flush (duplicates included)

    def accept(notices: list[tuple[str | None, Notice]]) -> None:
        """The ledger step, as ingress does it for pushes."""
        nonlocal waiting
        accept_notices(retrier, notices, observer, regions)
        waiting += len(notices)

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
        if report.received == 0 or report.stopped == "time" or report_of_drain.stopped == "time":
            break
    return pulled, drained
