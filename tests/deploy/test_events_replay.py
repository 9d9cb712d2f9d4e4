"""Every sample in events/ replayed through both entry points, as SCF and Lambda would deliver it.

The Batch API is the in-memory FakeGateway (it knows the sample's jobs as FAILED); the ledger is a
real SQLite file. The samples carry the token `sample-token` the way each platform delivers it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.local import free_port as closed_port  # a loopback port nobody listens on
from handler import app
from handler.notices import JOB_ID_PATTERN
from tests.core.fakes import FakeGateway

from .conftest import Deployed, LambdaContext, deploy, recent_end, scf_context

EVENTS = Path(__file__).resolve().parents[2] / "events"
TOKEN = "sample-token"


@dataclass(frozen=True)
class Expect:
    status: int
    retried: frozenset[str] = frozenset()
    error: str | None = None  # a phrase the 4xx message must contain
    ignored: int = 0


def ids(*jobs: str) -> frozenset[str]:
    return frozenset(jobs)


# The samples that name one failure: answered 200, that job retried once. A sweep tick's job is
# the one the fake API lists as FAILED; a pull tick with no AUTORETRY_QUEUE sweeps instead (and
# says so); aws-alb-http is the plain-http listener for the CMQ push; the variant is an undocumented
# shape read as a reasonable variant would be (the job id in a task instance, EventVars as an
# object, numbers for times).
ONE_FAILURE = dict(line.split() for line in """
    scf-apigw-push-envelope.json              job-a1b2c3d4
    scf-apigw-simplified.json                 job-b2c3d4e5
    scf-apigw-base64-msgbody.json             job-c3d4e5f6
    scf-apigw-base64-encoded.json             job-d4e5f6a7
    aws-httpapi-v2.json                       job-e5f6a7b8
    aws-rest-v1.json                          job-f6a7b8c9
    aws-function-url.json                     job-0a1b2c3d
    aws-alb-http.json                         job-3e4f5a6b
    direct-notice.json                        job-4e5f6a7b
    scf-timer.json                            job-5weep001
    aws-scheduled-event.json                  job-5weep001
    scf-function-url-push-envelope.json       job-6a7b8c9d
    scf-function-url-simplified-bearer.json   job-7b8c9d0e
    scf-clb-push-envelope.json                job-8c9d0e1f
    scf-timer-pull.json                       job-5weep001
    aws-scheduled-pull.json                   job-5weep001
    variant-task-instance-notice.json         job-6a7b8c9d
""".strip().splitlines())

EXPECTED: dict[str, Expect] = {
    **{name: Expect(200, ids(job)) for name, job in ONE_FAILURE.items()},
    "scf-cmq-records.json": Expect(200, ids("job-1b2c3d4e", "job-2c3d4e5f"), ignored=1),
    "variant-unhandled-event.json": Expect(200, ignored=1),  # an event we do not act on: 200
    "bad-malformed-json.json": Expect(400, error="neither JSON nor base64"),
    "bad-unknown-event.json": Expect(400, error="unrecognised event"),
    "bad-missing-jobid.json": Expect(400, error="JobId is required"),
}


ENTRY_POINTS: dict[str, Callable[[], Any]] = {  # entry point -> the context its platform passes
    "main_handler": scf_context,
    "lambda_handler": LambdaContext,
}


def sample(name: str) -> Any:
    """The event in events/`name`, as the platform delivers it."""
    return json.loads((EVENTS / name).read_text())


def entry_point(function: Deployed, entry: str
                ) -> tuple[Callable[[Any, Any], dict[str, Any]], Callable[[], Any]]:
    return getattr(function, entry), ENTRY_POINTS[entry]


@pytest.fixture
def gateway(fake_batch: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """Deployed, not local: the token configured as the samples carry it."""
    deploy(monkeypatch, TOKEN)
    return fake_batch


@pytest.fixture
def ledger_down(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """Deployed, with the ledger on a Redis port nobody listens on."""
    monkeypatch.setenv("AUTORETRY_STORE", f"redis://127.0.0.1:{closed_port()}/0")
    return gateway


def test_every_sample_has_an_expectation() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.status == 200))
def test_sample_job_ids_are_well_formed(name: str) -> None:
    import re

    text = (EVENTS / name).read_text()
    for job in re.findall(r"job-[0-9A-Za-z]+", text):
        assert re.match(JOB_ID_PATTERN, job), (name, job)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_is_answered_in_the_platform_shape_and_retried_once(
    gateway: FakeGateway, function: Deployed, name: str, entry: str
) -> None:
    expect = EXPECTED[name]
    for job in expect.retried:
        gateway.fail(job, recent_end())
    handler, context = entry_point(function, entry)

    answer = handler(sample(name), context())

    assert set(answer) == {"isBase64Encoded", "statusCode", "headers", "body"}
    assert answer["isBase64Encoded"] is False
    assert answer["headers"] == {"Content-Type": "application/json"}
    assert answer["statusCode"] == expect.status, answer
    body = json.loads(answer["body"])
    if expect.error:
        assert expect.error in body["error"]
        assert gateway.retried == []
        return
    assert sorted(j for batch in gateway.retried for j in batch) == sorted(expect.retried)
    # one RetryJobs call for the whole delivery (none when it names no failure)
    assert len(gateway.retried) == (1 if expect.retried else 0)
    if "ignored" in body:
        assert body["ignored"] == expect.ignored


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_redelivered_sample_retries_nothing_more(gateway: FakeGateway, function: Deployed,
                                                 entry: str) -> None:
    gateway.fail("job-a1b2c3d4", recent_end())
    gateway.jobs["job-a1b2c3d4"]["JobState"] = "FAILED"
    handler, context = entry_point(function, entry)
    event = sample("scf-apigw-push-envelope.json")
    assert handler(event, context())["statusCode"] == 200
    gateway.jobs["job-a1b2c3d4"]["JobState"] = "FAILED"  # the same failure, still reported FAILED
    assert handler(event, context())["statusCode"] == 200
    assert gateway.count("job-a1b2c3d4") == 1


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("name", ["scf-cmq-records.json", "scf-timer.json", "direct-notice.json"])
def test_queue_and_timer_deliveries_fail_the_invocation_when_the_ledger_is_down(
    ledger_down: FakeGateway, function: Deployed, name: str, entry: str
) -> None:
    # These platforms redeliver only when the function fails: a 503 in the answer would lose it.
    handler, context = entry_point(function, entry)
    with pytest.raises(app.RedeliverLater, match="ledger unavailable"):
        handler(sample(name), context())


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_http_delivery_gets_503_when_the_ledger_is_down(
    ledger_down: FakeGateway, function: Deployed, entry: str
) -> None:
    handler, context = entry_point(function, entry)
    answer = handler(sample("aws-httpapi-v2.json"), context())
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"]) == {"error": "ledger unavailable; redeliver later"}
