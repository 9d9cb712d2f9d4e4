"""The retrier's side of notifications: one call when a failure is given up."""

from __future__ import annotations

from handler.jobs import FailureKey
from handler.notify.message import GiveUp
from handler.notify.outbox import Outbox
from handler.notify.settings import NotifySettings


class Announcer:
    """Keeps a give-up message for the sender when the settings want this outcome announced; with no
    channel configured it touches nothing. Call it BEFORE settling the failure: a crash between the
    two re-decides the failure and announces again, which the outbox absorbs."""

    def __init__(self, outbox: Outbox | None, settings: NotifySettings) -> None:
        self.outbox, self.settings = outbox, settings

    def give_up(self, key: FailureKey, *, outcome: str, reason: str, rule: str, retries_spent: int,
                job_name: str | None = None) -> bool:
        """True if a message was kept now; False if unwanted or already kept for this failure."""
        if self.outbox is None or not self.settings.wants(outcome):
            return False
        message = GiveUp.of(key, outcome=outcome, reason=reason, rule=rule, retries_spent=retries_spent,
                            job_name=job_name)
        return self.outbox.add(key, message)
