"""A word when a job is given up: one message per failure, kept in the ledger's store until every
configured channel (WeCom, DingTalk, Slack, a signed webhook) has taken it. See docs/notify.md."""

from __future__ import annotations

from handler.notify.announce import Announcer
from handler.notify.channels import (
    Channel,
    ChannelError,
    DingTalkChannel,
    ErrorKind,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)
from handler.notify.message import GiveUp, history_command
from handler.notify.notifier import DeliveryReport, Notifier, backoff_s
from handler.notify.outbox import Outbox
from handler.notify.settings import NotifySettings
from handler.observe import Observer

__all__ = [
    "Announcer",
    "Channel",
    "ChannelError",
    "DeliveryReport",
    "DingTalkChannel",
    "ErrorKind",
    "GiveUp",
    "Notifications",
    "Notifier",
    "NotifySettings",
    "Outbox",
    "SlackChannel",
    "WeComChannel",
    "WebhookChannel",
    "backoff_s",
    "history_command",
]


class Notifications:
    """What the runtime holds when some channel is configured: the outbox in the ledger's store and
    the settings; the retrier announces through it and delivers what is due."""

    def __init__(self, outbox: Outbox, settings: NotifySettings) -> None:
        self.outbox, self.settings = outbox, settings

    def announcer(self) -> Announcer:
        return Announcer(self.outbox, self.settings)

    def deliver(self, observer: Observer, seconds: float) -> DeliveryReport:
        return Notifier(self.outbox, self.settings.channels, observer,
                        base_s=self.settings.backoff_s).deliver(seconds)
