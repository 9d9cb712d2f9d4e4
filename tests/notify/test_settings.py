"""Which channels and which outcomes, from the environment and the policy."""

from __future__ import annotations

import pytest

from handler.config import ConfigError
from handler.notify import DingTalkChannel, NotifySettings, SlackChannel, WebhookChannel, WeComChannel


def test_no_channel_configured_means_nothing_is_announced() -> None:
    s = NotifySettings.from_env({})
    assert s.channels == () and not s.enabled and not s.wants("max_attempts")


def test_every_channel_comes_from_its_variable() -> None:
    s = NotifySettings.from_env({
        "AUTORETRY_NOTIFY_WECOM_URL": "https://wecom.test/cgi-bin/webhook/send?key=k",
        "AUTORETRY_NOTIFY_DINGTALK_URL": "https://ding.test/robot/send?access_token=t",
        "AUTORETRY_NOTIFY_DINGTALK_SECRET": "SECs",
        "AUTORETRY_NOTIFY_SLACK_URL": "https://slack.test/services/T/B/x",
        "AUTORETRY_NOTIFY_WEBHOOK_URL": "https://ops.test/hook",
        "AUTORETRY_NOTIFY_TIMEOUT_S": "2.5",
    })
    assert [type(c) for c in s.channels] == [WeComChannel, DingTalkChannel, SlackChannel, WebhookChannel]
    assert all(c.timeout_s == 2.5 for c in s.channels)  # type: ignore[attr-defined]


def test_every_give_up_outcome_notifies_by_default_and_nothing_else() -> None:
    s = NotifySettings.from_env({"AUTORETRY_NOTIFY_SLACK_URL": "https://slack.test/services/T/B/x"})
    assert s.outcomes == {"max_attempts", "skipped", "budget_exhausted", "rejected"}
    assert s.wants("budget_exhausted") and not s.wants("retried") and not s.wants("not_found")


def test_the_policy_chooses_outcomes_and_the_environment_overrides_it() -> None:
    env = {"AUTORETRY_NOTIFY_SLACK_URL": "https://slack.test/services/T/B/x"}
    by_policy = NotifySettings.from_env(env, policy_outcomes=frozenset({"budget_exhausted"}))
    assert by_policy.outcomes == {"budget_exhausted"} and not by_policy.wants("skipped")
    env["AUTORETRY_NOTIFY_ON"] = "max_attempts, rejected"
    by_env = NotifySettings.from_env(env, policy_outcomes=frozenset({"budget_exhausted"}))
    assert by_env.outcomes == {"max_attempts", "rejected"}
    env["AUTORETRY_NOTIFY_ON"] = "none"
    assert not NotifySettings.from_env(env).enabled


@pytest.mark.parametrize("raw", ["retried", "max_attempts,typo", ","])
def test_unknown_outcomes_are_refused_with_the_words_allowed(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"AUTORETRY_NOTIFY_ON.*expected all, none, or a comma list of "
                                          r"budget_exhausted, max_attempts, rejected, skipped"):
        NotifySettings.from_env({"AUTORETRY_NOTIFY_ON": raw})


def test_a_secret_without_its_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="AUTORETRY_NOTIFY_WEBHOOK_SECRET is set but "
                                          "AUTORETRY_NOTIFY_WEBHOOK_URL is not"):
        NotifySettings.from_env({"AUTORETRY_NOTIFY_WEBHOOK_SECRET": "s"})
