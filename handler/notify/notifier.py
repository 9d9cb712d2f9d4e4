"""The sender: takes due messages from the outbox under a lease, sends each to every channel that
has not taken it yet, and marks it sent or due again after a backoff. It runs outside the retry
path (after a drain, on the timer), bounded by the time it is given."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from handler.ledger.store import StoreUnavailable
from handler.notify.channels import Channel, ChannelError, ErrorKind
from handler.notify.outbox import Claimed, Outbox
from handler.observe import Observer

BASE_S = 30.0
CAP_S = 1800.0
MAX_REFUSALS = 5  # a channel that refuses one message this often is given up on, for that message
MARGIN_S = 2.0  # left between a send's timeout and the lease's or the deadline's end


def backoff_s(attempt: int, rng: random.Random, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    """Exponential with jitter: between half and all of min(cap, base·2^attempt), so retries from
    many instances spread out but every one waits longer than the last one's floor."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)  # failure keys every channel took
    rescheduled: list[str] = field(default_factory=list)  # due again after a backoff
    expired: list[str] = field(default_factory=list)  # still unsent when the give-up age passed
    channel_errors: int = 0
    held: int = 0  # due but leased by another sender
    stopped: str | None = None  # "time" or "store" when it stopped early
    pending: int | None = None  # messages still waiting, if the store answered


class Notifier:
    def __init__(self, outbox: Outbox, channels: Sequence[Channel], observer: Observer, *,
                 rng: random.Random | None = None, base_s: float = BASE_S, cap_s: float = CAP_S,
                 give_up_after_s: float | None = None, batch: int = 20,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.outbox, self.channels, self.observer = outbox, list(channels), observer
        self.rng = rng or random.Random()
        self.base_s, self.cap_s, self.batch = base_s, cap_s, batch
        # A message older than this is dropped, loudly: by then its records are expiring anyway.
        self.give_up_after_s = outbox.retention_s if give_up_after_s is None else give_up_after_s
        self.monotonic = monotonic

    @property
    def _timeout_s(self) -> float:
        return max((float(getattr(c, "timeout_s", 5.0)) for c in self.channels), default=5.0)

    def deliver(self, deadline_s: float) -> DeliveryReport:
        """Send what is due within `deadline_s` seconds. Never raises for a channel or store error:
        it reports them, and whatever is left is due again next time."""
        report = DeliveryReport()
        end = self.monotonic() + deadline_s
        lease_s = len(self.channels) * (self._timeout_s + MARGIN_S) + MARGIN_S
        try:
            keys = self.outbox.due(self.batch * 4)
            # Concurrent senders read the same index: start at different places.
            self.rng.shuffle(keys)
            sent_or_tried = 0
            for key in keys:
                if sent_or_tried >= self.batch:
                    break
                if end - self.monotonic() < self._timeout_s + MARGIN_S:
                    report.stopped = "time"
                    break
                claimed = self.outbox.claim(key, lease_s)
                if claimed is None:
                    report.held += 1
                    continue
                sent_or_tried += 1
                self._send(claimed, end, report)
            report.pending = self.outbox.pending()
        except StoreUnavailable as e:  # a record that kept changing (Contention) is one too
            report.stopped = "store"
            self.observer.error("notifications paused: store unavailable", error=str(e)[:300])
        return report

    def _send(self, claimed: Claimed, end: float, report: DeliveryReport) -> None:
        msg = claimed.message
        refusals, abandoned = claimed.refusals, claimed.abandoned
        todo = [c for c in self.channels if c.name not in claimed.done and c.name not in abandoned]
        errors: list[ChannelError] = []
        for i, channel in enumerate(todo):
            timeout = float(getattr(channel, "timeout_s", 5.0))
            lease_left = claimed.lease_until - self.outbox.clock()
            if min(end - self.monotonic(), lease_left) < timeout + MARGIN_S:
                # Not enough time to send safely: hand it back, due now, for the next sender.
                self.outbox.release(claimed)
                report.stopped = "time"
                return
            try:
                channel.send(msg)
            except ChannelError as e:
                errors.append(e)
                report.channel_errors += 1
                self.observer.count("notify.failed")
                if e.kind == ErrorKind.PERMANENT:
                    refusals[channel.name] = refusals.get(channel.name, 0) + 1
                    if refusals[channel.name] >= MAX_REFUSALS:
                        abandoned.append(channel.name)
                        self.observer.error("notification abandoned on a channel that refuses it",
                                            failure_key=msg.failure_key, job=msg.job_id,
                                            channel=channel.name, detail=e.detail,
                                            refusals=refusals[channel.name])
                self.observer.warning("notification not delivered", failure_key=msg.failure_key,
                                      job=msg.job_id, channel=channel.name, kind=str(e.kind),
                                      detail=e.detail, attempt=claimed.attempts + 1)
                continue
            self.observer.count("notify.sent")
            self.observer.info("notification sent", failure_key=msg.failure_key, job=msg.job_id,
                               channel=channel.name, outcome=msg.outcome,
                               attempt=claimed.attempts + 1)
            more_to_send = i < len(todo) - 1
            if more_to_send and not self.outbox.mark_done(claimed, channel.name):
                self._lost(claimed)
                return
            if not more_to_send:
                claimed.done = [*claimed.done, channel.name]
        if not errors or all(e.channel in abandoned for e in errors):
            if self.outbox.mark_sent(claimed, abandoned):
                report.sent.append(claimed.key)
            else:
                self._lost(claimed)
            return
        now = self.outbox.clock()
        summary = "; ".join(str(e) for e in errors)[:300]
        if now - claimed.created_at >= self.give_up_after_s:
            if self.outbox.expire(claimed, summary):
                report.expired.append(claimed.key)
                self.observer.error("notification expired unsent", failure_key=msg.failure_key,
                                    job=msg.job_id, attempts=claimed.attempts + 1, error=summary)
            return
        delay = backoff_s(claimed.attempts, self.rng, self.base_s, self.cap_s)
        delay = max([delay, *(e.retry_after_s for e in errors if e.retry_after_s is not None)])
        if self.outbox.reschedule(claimed, now + delay, summary, refusals, abandoned):
            report.rescheduled.append(claimed.key)
        else:
            self._lost(claimed)

    def _lost(self, claimed: Claimed) -> None:
        self.observer.warning("notification lease lost; another sender holds it",
                              failure_key=claimed.key)
