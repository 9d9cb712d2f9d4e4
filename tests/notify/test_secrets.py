"""Webhook URLs and signing secrets are credentials: no log line, error, report or repr shows them,
whatever goes wrong on the way."""

from __future__ import annotations

import logging
import random
from urllib.parse import urlsplit

import pytest

from emulator.receiver import Receiver
from handler.config import ConfigError
from handler.ledger import Store
from handler.notify import GiveUp, Notifier, NotifySettings, Outbox, WeComChannel
from handler.notify.channels import ChannelError, Response
from handler.observe import Observer

from .conftest import DINGTALK_SECRET, WEBHOOK_SECRET, FakeClock, failure, give_up


def secrets_of(rx: Receiver) -> list[str]:
    env = rx.env()
    found = [DINGTALK_SECRET, WEBHOOK_SECRET, rx.wecom_key, rx.dingtalk_token,
             rx.slack_path.rsplit("/", 1)[1], rx.slack_path]
    found += [v for k, v in env.items() if k.endswith("_URL")]
    return found


def test_no_webhook_url_or_secret_reaches_a_log_line_whatever_fails(
    store: Store, receiver: Receiver, clock: FakeClock, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = receiver.env()
    env["AUTORETRY_NOTIFY_DINGTALK_SECRET"] = "SECa-wrong-secret-the-robot-refuses"
    settings = NotifySettings.from_env(env)
    outbox = Outbox(store, clock=clock)
    n = Notifier(outbox, settings.channels, Observer(), rng=random.Random(1))
    reports = []
    for i, trouble in enumerate([receiver.down, receiver.throttle, receiver.refuse, receiver.up]):
        trouble()
        k = failure(i)
        outbox.add(k, give_up(k))
        reports.append(n.deliver(30))
        clock.advance(3600)
    out = capsys.readouterr().out
    assert "notification not delivered" in out and "notification sent" in out
    assert "errcode 310000" in out  # the wrong DingTalk secret is reported, not shown
    shown = out + caplog.text + repr(settings) + "".join(repr(c) for c in settings.channels) + repr(reports)
    shown += "".join(str(m) for m in outbox.messages())
    for secret in [*secrets_of(receiver), "SECa-wrong-secret-the-robot-refuses"]:
        assert secret not in shown, secret
    assert f"http://127.0.0.1:{receiver.port}/***" in repr(settings.channels[0])


def test_an_error_that_quotes_the_url_is_masked() -> None:
    url = "https://qyapi.example.test/cgi-bin/webhook/send?key=0123456789abcdef-secret-key"

    def leaky(u: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        raise OSError(f"cannot reach {u} (key {urlsplit(u).query})")

    channel = WeComChannel(url, post=leaky)
    with pytest.raises(ChannelError) as err:
        channel.send(give_up(failure(1)))
    assert "0123456789abcdef-secret-key" not in str(err.value) and url not in str(err.value)
    assert "OSError: cannot reach ***" in str(err.value)


def test_an_errmsg_that_echoes_the_key_is_masked() -> None:
    url = "https://qyapi.example.test/cgi-bin/webhook/send?key=feedfacecafe-beef"

    def echo(u: str, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        return Response(200, b'{"errcode": 93000, "errmsg": "invalid webhook url, key feedfacecafe-beef"}')

    with pytest.raises(ChannelError) as err:
        WeComChannel(url, post=echo).send(GiveUp.of(failure(1), outcome="skipped", reason="r", rule="r",
                                                     retries_spent=0))
    assert "feedfacecafe-beef" not in str(err.value) and "errcode 93000" in str(err.value)


def test_a_malformed_webhook_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as err:
        NotifySettings.from_env({"AUTORETRY_NOTIFY_SLACK_URL": "hooks.slack.test/services/T1/B2/sekrit-part"})
    assert "AUTORETRY_NOTIFY_SLACK_URL" in str(err.value) and "sekrit-part" not in str(err.value)
