"""Bad input: a clear 4xx, and the ledger unchanged."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.commands.serve import apigw_event
from handler.ingress import BadInput, read_notice
from tests.conftest import ledger_rows


def notice(job: str = "job-abcd1234", event: str = "JOB_FAILED", **batch: Any) -> dict[str, Any]:
    return {"Events": [{"EventVersion": "1.0", "EventTime": "2026-11-24T10:00:00Z",
                        "Region": "ap-guangzhou", "EventName": event,
                        "Batch": {"JobId": job, **batch}, "EventVars": []}]}


def envelope(body: str) -> dict[str, Any]:
    return {"TopicOwner": 1250000000, "topicName": "batch-events", "subscriptionName": "autoretry",
            "msgId": "123", "msgBody": body, "publishTime": 1795000000000}


def post(body: bytes | str) -> dict[str, Any]:
    raw = body.encode() if isinstance(body, str) else body
    return app.main_handler(apigw_event("POST", "/events", {"Content-Type": "text/plain"}, raw),
                            {"time_limit_in_ms": 3000})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "empty body"),
        ("not json at all", "neither JSON nor base64"),
        ("[1, 2]", "must be a JSON object"),
        ('{"hello": "world"}', "no Events"),
        ('{"Events": []}', "Events"),
        (json.dumps(notice(job="not-a-job")), "JobId"),
        (json.dumps({"Events": [{"EventName": "JOB_FAILED", "Batch": {}}]}), "JobId is required"),
        (json.dumps(envelope("garbage!")), "msgBody is not a Batch notice"),
        (json.dumps({"msgBody": 5}), "push envelope"),
        ("[" * 1000 + "]" * 1000, "nested deeper"),
        (json.dumps({"Events": [{**notice()["Events"][0], "Region": "Mars Base"}]}), "Region"),
    ],
)
def test_bad_body_gets_400_with_a_clear_message_and_changes_nothing(
    function_env: Path, body: str, message: str
) -> None:
    result = post(body)
    assert result["statusCode"] == 400, result
    assert message in json.loads(result["body"])["error"]
    assert ledger_rows(function_env) == 0


def test_body_over_the_limit_is_refused_with_413(function_env: Path) -> None:
    result = post(b"x" * (1024 * 1024 + 1))
    assert result["statusCode"] == 413
    assert ledger_rows(function_env) == 0


def test_unrecognised_event_shape_is_400(function_env: Path) -> None:
    result = app.main_handler({"what": "is this"}, {})
    assert result["statusCode"] == 400
    assert "unrecognised event" in json.loads(result["body"])["error"]


@pytest.mark.parametrize("event", ["JOB_SUCCEED", "JOB_EXPLODED"])
def test_events_we_do_not_act_on_are_accepted_and_ignored(function_env: Path, event: str) -> None:
    # Documented or not: a 4xx would have the topic push it again for a day.
    result = post(json.dumps(notice(event=event)))
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["ignored"] == 1
    assert ledger_rows(function_env) == 0


@pytest.mark.parametrize("wrap", ["envelope", "simplified", "base64-body", "base64-msgbody"])
def test_every_push_format_yields_the_same_notice(wrap: str) -> None:
    raw = json.dumps(notice())
    body = {
        "envelope": json.dumps(envelope(raw)),
        "simplified": raw,
        "base64-body": base64.b64encode(json.dumps(envelope(raw)).encode()).decode(),
        "base64-msgbody": json.dumps(envelope(base64.b64encode(raw.encode()).decode())),
    }[wrap]
    parsed, _ = read_notice(body)
    assert parsed.Events[0].Batch.JobId == "job-abcd1234"
    assert parsed.Events[0].EventName == "JOB_FAILED"


def test_unknown_fields_are_kept() -> None:
    parsed, _ = read_notice(json.dumps(notice(Shiny="new", JobName="render")))
    assert parsed.Events[0].Batch.extra == {"Shiny": "new"}
    assert parsed.Events[0].Batch.JobName == "render"


def test_read_notice_rejects_non_utf8() -> None:
    with pytest.raises(BadInput, match="UTF-8"):
        read_notice(b"\xff\xfe{")


def test_accepted_failure_notice_is_durable_before_the_answer(function_env: Path) -> None:
    # No Batch endpoint is reachable here: the flush fails, but the notice is recorded and 200.
    result = post(json.dumps(envelope(json.dumps(notice()))))
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["accepted"] == 1
    assert ledger_rows(function_env) >= 1
