"""Each channel's message as the receiver recorded it, checked against the service's documented
format; DingTalk's and the generic webhook's signatures checked here with the documented algorithm,
written out again rather than imported."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time

from emulator.receiver import Received, Receiver
from handler.ledger import Store
from handler.notify import (
    DingTalkChannel,
    GiveUp,
    Notifier,
    Outbox,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)
from handler.notify.signing import verify_webhook
from handler.observe import Observer

from .conftest import DINGTALK_SECRET, WEBHOOK_SECRET, failure

KEY = failure(42)
MESSAGE = GiveUp.of(KEY, outcome="budget_exhausted", reason="budget_exhausted: fleet retry budget spent",
                    rule="everything-else", retries_spent=2, job_name="nightly-etl")
FIELDS = ["job-00000042", "nightly-etl", "ap-guangzhou", "budget_exhausted",
          "the fleet's retry budget is spent", "fleet retry budget spent", "everything-else", "2",
          "2026-11-24T10:00:05Z", "python -m handler ledger show job-00000042"]


def send_one(store: Store, rx: Receiver, channel: str, message: GiveUp = MESSAGE) -> Received:
    channels = {
        "wecom": WeComChannel(rx.url("wecom")),
        "dingtalk": DingTalkChannel(rx.url("dingtalk"), secret=DINGTALK_SECRET),
        "slack": SlackChannel(rx.url("slack")),
        "webhook": WebhookChannel(rx.url("webhook"), secret=WEBHOOK_SECRET),
    }
    outbox = Outbox(store)
    outbox.add(failure(42), message)
    report = Notifier(outbox, [channels[channel]], Observer(quiet=True), rng=random.Random(1)).deliver(30)
    assert report.sent == [str(KEY)], report
    (received,) = rx.requests(channel)
    assert received.accepted and received.header("Content-Type") == "application/json"
    return received


def test_wecom_gets_a_markdown_message_with_every_field(store: Store, receiver: Receiver) -> None:
    r = send_one(store, receiver, "wecom")
    body = r.json
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert set(body["markdown"]) == {"content"}
    assert len(content.encode()) <= 4096
    assert content.startswith("**Batch job given up: nightly-etl (job-00000042)**")
    for value in FIELDS:
        assert value in content, value
    assert r.query == {"key": receiver.wecom_key}


def test_dingtalk_gets_markdown_signed_with_the_robots_secret(store: Store, receiver: Receiver) -> None:
    r = send_one(store, receiver, "dingtalk")
    body = r.json
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
    assert body["markdown"]["title"] == "Batch job given up: nightly-etl (job-00000042)"
    for value in FIELDS:
        assert value in body["markdown"]["text"], value
    # sign = Base64(HmacSHA256(key=secret, "<timestamp ms>\n<secret>")), URL-encoded in the query.
    assert set(r.query) == {"access_token", "timestamp", "sign"}
    ts = int(r.query["timestamp"])
    assert abs(ts - time.time() * 1000) < 60_000
    digest = hmac.new(DINGTALK_SECRET.encode(), f"{ts}\n{DINGTALK_SECRET}".encode(), hashlib.sha256).digest()
    assert r.query["sign"] == base64.b64encode(digest).decode()


def test_slack_gets_text_and_blocks_in_mrkdwn(store: Store, receiver: Receiver) -> None:
    r = send_one(store, receiver, "slack")
    body = r.json
    assert body["text"] == "Batch job given up: nightly-etl (job-00000042): the fleet's retry budget is spent"
    header, section, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text",
                                                 "text": "Batch job given up: nightly-etl (job-00000042)"}}
    assert section["type"] == "section" and len(section["fields"]) == 8
    assert all(f["type"] == "mrkdwn" for f in section["fields"])
    assert section["fields"][0]["text"] == "*Job*\njob-00000042"
    assert context["elements"][0]["text"] == "History: `python -m handler ledger show job-00000042`"


def test_the_generic_webhook_gets_json_with_a_verifiable_signature(store: Store, receiver: Receiver) -> None:
    r = send_one(store, receiver, "webhook")
    body = r.json
    assert body["type"] == "job.given_up" and body["id"] == str(KEY)
    assert {k: body[k] for k in ("job_id", "job_name", "region", "outcome", "rule", "retries_spent",
                                 "end_time", "history_command")} == {
        "job_id": "job-00000042", "job_name": "nightly-etl", "region": "ap-guangzhou",
        "outcome": "budget_exhausted", "rule": "everything-else", "retries_spent": 2,
        "end_time": "2026-11-24T10:00:05Z", "history_command": "python -m handler ledger show job-00000042"}
    assert r.header("X-Autoretry-Message-Id") == str(KEY)
    # X-Autoretry-Signature = "sha256=" + hex(HMAC-SHA256(secret, "<timestamp>." + raw body))
    ts = r.header("X-Autoretry-Timestamp")
    assert ts is not None and abs(int(ts) - time.time()) < 60
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + r.body,
                                    hashlib.sha256).hexdigest()
    assert r.header("X-Autoretry-Signature") == expected
    assert verify_webhook(WEBHOOK_SECRET, r.headers, r.body, time.time())
    assert not verify_webhook(WEBHOOK_SECRET, r.headers, r.body + b" ", time.time())
    assert not verify_webhook("another-secret", r.headers, r.body, time.time())
    assert not verify_webhook(WEBHOOK_SECRET, r.headers, r.body, time.time() + 600)  # replayed late


def test_a_job_name_cannot_forge_lines_or_markup(store: Store, receiver: Receiver) -> None:
    sly = GiveUp.of(KEY, outcome="skipped", reason="OOM\n> Rule: nothing <font color=\"info\">fine</font>",
                    rule="oom", retries_spent=0, job_name="a<b>&c **bold**\n> Job: fake")
    wecom = send_one(store, receiver, "wecom", sly).json["markdown"]["content"]
    lines = wecom.splitlines()
    assert sum(line.startswith("> Job:") for line in lines) == 1
    assert "<font" not in wecom and "\u2039font" in wecom
    assert "**bold**" not in wecom
    assert "> Name: a\u2039b\u203a&c \u2217\u2217bold\u2217\u2217 \u203a Job: fake" in wecom


def test_slack_escapes_the_three_characters_it_asks_for(store: Store, receiver: Receiver) -> None:
    sly = GiveUp.of(KEY, outcome="skipped", reason="a <@channel> & b", rule="r", retries_spent=0,
                    job_name="x<y>&z")
    body = send_one(store, receiver, "slack", sly).json
    text = json.dumps(body)
    assert "x&lt;y&gt;&amp;z" in text and "&lt;@channel&gt; &amp; b" in text
    assert "<@channel>" not in text
