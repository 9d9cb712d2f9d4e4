"""Which channels get give-up messages, for which outcomes, and how long a failed one waits, from
`AUTORETRY_NOTIFY_*`. Every variable of that prefix is checked, a channel or not: a wrong one is a
ConfigError.

Errors name the variable and what it takes, never its value: webhook URLs and secrets are
credentials.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from handler.config import ConfigError, env_number, env_secret
from handler.notify.channels import (
    DEFAULT_TIMEOUT_S,
    Channel,
    DingTalkChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)
from handler.notify.notifier import BASE_S, CAP_S
from handler.outcomes import GIVE_UP_OUTCOMES

PREFIX = "AUTORETRY_NOTIFY_"
ENV_ON = "AUTORETRY_NOTIFY_ON"
ENV_TIMEOUT = "AUTORETRY_NOTIFY_TIMEOUT_S"
ENV_BACKOFF = "AUTORETRY_NOTIFY_BACKOFF_S"
# (variable with the URL, variable with the signing secret or None, channel class)
CHANNEL_ENV: tuple[tuple[str, str | None, type[WebhookChannel]], ...] = (
    ("AUTORETRY_NOTIFY_WECOM_URL", None, WeComChannel),
    ("AUTORETRY_NOTIFY_DINGTALK_URL", "AUTORETRY_NOTIFY_DINGTALK_SECRET", DingTalkChannel),
    ("AUTORETRY_NOTIFY_SLACK_URL", None, SlackChannel),
    ("AUTORETRY_NOTIFY_WEBHOOK_URL", "AUTORETRY_NOTIFY_WEBHOOK_SECRET", WebhookChannel),
)

NAMES = frozenset({ENV_ON, ENV_TIMEOUT, ENV_BACKOFF,
                   *(n for url, secret, _ in CHANNEL_ENV for n in (url, secret) if n)})


def parse_outcomes(raw: str, source: str) -> frozenset[str]:
    """`all`, `none`, or a comma list of give-up outcomes."""
    words = {w.strip().lower() for w in raw.split(",") if w.strip()}
    if words == {"all"}:
        return frozenset(str(o) for o in GIVE_UP_OUTCOMES)
    if words == {"none"}:
        return frozenset()
    allowed = sorted(str(o) for o in GIVE_UP_OUTCOMES)
    unknown = sorted(words - set(allowed))
    if unknown or not words:
        raise ConfigError(f"{source}: unknown outcome(s) {', '.join(unknown) or '(empty)'}; "
                          f"expected all, none, or a comma list of {', '.join(allowed)}")
    return frozenset(words)


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{name}: expected the webhook's https:// URL as the service shows it "
                          "(the value is not shown here: it is a secret)")
    return raw


def _unknown_names(env: Mapping[str, str]) -> None:
    # A misspelt channel variable would otherwise leave its channel silently off.
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in NAMES and env[name].strip():
            near = difflib.get_close_matches(name[len(PREFIX):], [n[len(PREFIX):] for n in NAMES], 1)
            hint = f"did you mean {PREFIX}{near[0]}? " if near else ""
            raise ConfigError(f"{name} is not a notification setting; {hint}"
                              f"the settings are {', '.join(sorted(NAMES))}")


@dataclass(frozen=True)
class NotifySettings:
    channels: tuple[Channel, ...] = ()
    outcomes: frozenset[str] = field(default_factory=lambda: frozenset(str(o) for o in GIVE_UP_OUTCOMES))
    backoff_s: float = BASE_S  # a failed message waits between half and all of backoff·2^attempts

    @property
    def enabled(self) -> bool:
        return bool(self.channels) and bool(self.outcomes)

    def wants(self, outcome: str) -> bool:
        """True if a failure settled with `outcome` should be announced."""
        return self.enabled and str(outcome) in self.outcomes

    def __repr__(self) -> str:
        return (f"NotifySettings(channels={[c.name for c in self.channels]}, "
                f"outcomes={sorted(self.outcomes)}, backoff_s={self.backoff_s:g})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 policy_outcomes: frozenset[str] | None = None) -> NotifySettings:
        """`policy_outcomes` is the policy file's `notify: {outcomes: [...]}`; `AUTORETRY_NOTIFY_ON`,
        when set, wins over it (the deployment overrides the shared file); without either, every
        give-up outcome notifies. Every setting is checked, whether or not a channel is set."""
        env = os.environ if env is None else env
        _unknown_names(env)
        timeout = env_number(env, ENV_TIMEOUT, DEFAULT_TIMEOUT_S, 0.1, 30, what="seconds")
        backoff = env_number(env, ENV_BACKOFF, BASE_S, 1, CAP_S, what="seconds")
        channels: list[Channel] = []
        for url_name, secret_name, kind in CHANNEL_ENV:
            url = _url(env, url_name)
            secret = env_secret(env, secret_name) if secret_name else None
            if url is not None:
                channels.append(kind(url, secret=secret, timeout_s=timeout))
            elif secret:
                raise ConfigError(f"{secret_name} is set but {url_name} is not")
        raw_on = env.get(ENV_ON, "").strip()
        if raw_on:
            outcomes = parse_outcomes(raw_on, ENV_ON)
        elif policy_outcomes is not None:
            outcomes = parse_outcomes(",".join(policy_outcomes) or "none", "policy notify.outcomes")
        else:
            outcomes = frozenset(str(o) for o in GIVE_UP_OUTCOMES)
        return cls(tuple(channels), outcomes, backoff)
