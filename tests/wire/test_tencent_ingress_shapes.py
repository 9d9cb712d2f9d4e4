"""What each wiring on Tencent Cloud delivers to the function, replayed end to end against the
emulator: SCF function URL (doc 583/96099) and CLB (doc 583/52635) events carrying a TDMQ-CMQ push,
and the timer ticks that mean "pull the queue"."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from handler import app
from handler.ingress import classify_event, is_pull_tick

EVENTS = Path(__file__).resolve().parents[2] / "events"
HTTP_SAMPLES = ["scf-function-url-push-envelope.json", "scf-function-url-simplified-bearer.json",
                "scf-clb-push-envelope.json"]


def scf_context() -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "time_limit_in_ms": 15000}


def sample_for(name: str, job_id: str) -> dict[str, Any]:
    """The sample with its job replaced by one the emulator knows as FAILED."""
    text = (EVENTS / name).read_text()
    (old,) = set(re.findall(r"job-[0-9a-z]{8}", text))
    event: dict[str, Any] = json.loads(text.replace(old, job_id))
    return event


@pytest.fixture
def deployed(wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", "sample-token")
    monkeypatch.setenv("AUTORETRY_LOCAL", "false")
    app.reset_runtime()
    return wired


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_tencent_http_shapes_are_recognised_and_retry_the_job_once(deployed: Emulator, name: str) -> None:
    job = deployed.add_failed_job("render")
    event = sample_for(name, job)
    assert classify_event(event).kind == "http"
    answers = [app.main_handler(event, scf_context()) for _ in range(2)]  # a redelivery too
    assert [a["statusCode"] for a in answers] == [200, 200], answers
    assert set(answers[0]) >= {"statusCode", "headers", "body"}  # the function URL's answer shape
    assert json.loads(answers[0]["body"])["accepted"] == 1
    assert deployed.retry_counts()[job] == 1


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_tencent_http_shapes_without_the_token_are_refused(deployed: Emulator, name: str) -> None:
    job = deployed.add_failed_job("render")
    event = sample_for(name, job)
    event["queryString"] = {}
    event["headers"].pop("authorization", None)
    assert app.main_handler(event, scf_context())["statusCode"] == 401
    assert deployed.count("RetryJobs") == 0


def test_pull_ticks_are_the_marked_timer_events_only() -> None:
    ticks = {p.name: is_pull_tick(json.loads(p.read_text())) for p in sorted(EVENTS.glob("*.json"))}
    assert {name for name, pull in ticks.items() if pull} == {"scf-timer-pull.json",
                                                               "aws-scheduled-pull.json"}
    for name in ("scf-timer-pull.json", "aws-scheduled-pull.json"):
        assert classify_event(json.loads((EVENTS / name).read_text())).kind == "pull"
    assert classify_event(json.loads((EVENTS / "scf-timer.json").read_text())).kind == "timer"
