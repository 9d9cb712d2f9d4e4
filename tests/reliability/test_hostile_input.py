"""Hostile input, fuzzed with hypothesis through both entry points and every trigger shape: never a
5xx, never an exception, never a RetryJobs call; bodies over the limit refused before parsing;
forged and replayed credentials refused.

The emulator holds jobs a forged notice may name (SUCCEED, FAILED_INTERRUPTED, unknown ids) but no
FAILED job the fuzzed requests can reach, so any RetryJobs call here is one the input caused.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import Emulator, Outcome
from handler import app, auth
from handler.commands.serve import apigw_event
from handler.ingress import MAX_BODY_BYTES, BadInput, read_notice
from handler.jobs import JobRef
from handler.observe import Observer
from handler.retrier import Deadline

from .conftest import Env

TOKEN = "tok-hostile-6c1f0e9a5d"
HMAC_SECRET = "hmac-hostile-0b7d93e2c4"
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


class LambdaContext:
    aws_request_id = "fuzz"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


Entry = Callable[[Any, Any], dict[str, Any]]


class Target:
    """The function under fuzz and the emulator that counts every RetryJobs."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.ok = emu.add_job("fine", [Outcome.succeed()])
        self.interrupted = emu.add_job("cut", [Outcome.fail("node lost", None, interrupted=True)])
        self.failed = emu.add_failed_job("victim", [Outcome.succeed()])  # only a valid sender may retry it
        assert emu.wait_idle(10)
        self.ids = [self.ok, self.interrupted, "job-00000000", "job-zzzzzzzz", "job-NOTANAPIID"]
        self.invocations = 0
        self.statuses: dict[int, int] = {}

    def invoke(self, entry: Entry, event: Any) -> dict[str, Any]:
        before = self.emu.count("RetryJobs")
        context: Any = LambdaContext() if entry is app.lambda_handler else {"time_limit_in_ms": 10_000}
        answer = entry(event, context)  # an exception here fails the test: that is a crash
        self.invocations += 1
        status = answer["statusCode"]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, answer
        assert isinstance(json.loads(answer["body"]), dict)
        assert self.emu.count("RetryJobs") == before, f"input caused a RetryJobs call: {event!r:.300}"
        return answer


@pytest.fixture(scope="module")
def target(module_emu: Emulator, module_function: Env) -> Iterator[Target]:
    module_function.set(AUTORETRY_AUTH_TOKEN=TOKEN, AUTORETRY_HMAC_SECRET=HMAC_SECRET)
    app.reset_runtime()
    t = Target(module_emu)
    yield t
    assert module_emu.retry_counts()[t.failed] == 0
    print(f"\nhostile input: {t.invocations} invocations, answers {dict(sorted(t.statuses.items()))}, "
          f"RetryJobs calls {module_emu.count('RetryJobs')}")


# --- strategies -----------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4)
                          | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
EVENT_NAMES = ["JOB_FAILED", "JOB_FAILED_INTERRUPTED", "TASK_FAILED", "TASK_INSTANCE_FAILED", "JOB_SUCCEED",
               "JOB_RUNNING", "COMPUTE_NODE_ABNORMAL"]


@st.composite
def forged_notice(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    """A notice that validates, naming jobs that exist but are not FAILED, or none at all."""
    events = []
    for _ in range(draw(st.integers(1, 4))):
        batch: dict[str, Any] = {"JobId": draw(st.sampled_from(target.ids))}
        if draw(st.booleans()):
            batch["JobState"] = "FAILED"  # the notice lies; DescribeJobs tells the truth
            batch["EndTime"] = draw(st.sampled_from(["2026-11-24T10:00:05Z", "", "yesterday"]))
        if draw(st.booleans()):
            batch.update(draw(st.dictionaries(st.text(max_size=8), json_leaf, max_size=3)))
        event_vars = draw(st.sampled_from([[], None, [{"Name": "k", "Value": 1}]]))
        events.append({"EventName": draw(st.sampled_from(EVENT_NAMES)), "Region": "ap-guangzhou",
                       "Batch": batch, "EventVars": event_vars})
    return {"Events": events}


def envelope(body: str, msg_id: Any = "1") -> dict[str, Any]:
    return {"TopicOwner": 1250000000, "topicName": "batch-events", "subscriptionName": "s",
            "msgId": msg_id, "msgBody": body, "publishTime": 1}


def _mutate(draw: st.DrawFn, value: Any) -> Any:
    """Replace one node of a JSON document by a value of any type."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate(draw, value[key])}
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mutate(draw, value[i]), *value[i + 1:]]
    return draw(json_value)


@st.composite
def hostile_body(draw: st.DrawFn, target: Target) -> bytes:
    notice = draw(forged_notice(target))
    kind = draw(st.sampled_from(["bytes", "truncated", "nested", "huge", "wrong_types", "forged",
                                 "unknown_event", "base64", "envelope_junk"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "truncated":
        text = json.dumps(envelope(json.dumps(notice)))
        return text[:draw(st.integers(0, len(text) - 1))].encode()
    if kind == "nested":
        depth = draw(st.integers(20, 20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"Events":', "}")]))
        inner = opener * depth + "1" + closer * depth
        return (json.dumps(envelope(inner)) if draw(st.booleans()) else inner).encode()
    if kind == "huge":
        size = draw(st.sampled_from([5_000, 70_000, MAX_BODY_BYTES // 2, MAX_BODY_BYTES - 200]))
        field = draw(st.sampled_from(["JobName", "StateReason", "EndTime", "JobId", "Extra"]))
        notice["Events"][0]["Batch"][field] = "x" * size
        return json.dumps(envelope(json.dumps(notice))).encode()
    if kind == "wrong_types":
        doc = envelope(json.dumps(notice)) if draw(st.booleans()) else notice
        return json.dumps(_mutate(draw, doc)).encode()
    if kind == "forged":
        return json.dumps(envelope(json.dumps(notice), msg_id=draw(json_leaf))).encode()
    if kind == "unknown_event":
        notice["Events"][0]["EventName"] = draw(st.text(max_size=80))
        return json.dumps(notice).encode()
    if kind == "base64":
        inner = base64.b64encode(json.dumps(notice).encode()).decode()
        return (inner if draw(st.booleans()) else json.dumps(envelope(inner))).encode()
    # an envelope whose msgBody is anything at all
    return json.dumps({**envelope(""), "msgBody": draw(json_value)}).encode()


def _text(body: bytes) -> str:
    return body.decode("utf-8", "surrogateescape")


def wrap(shape: str, body: bytes) -> tuple[Entry, Any]:
    """The event each platform would invoke the function with for this request body."""
    if shape == "scf-apigw":
        return app.main_handler, apigw_event("POST", f"/events?token={TOKEN}", {"Content-Type": "text/plain"},
                                             body)
    if shape in ("aws-v2", "aws-v2-base64"):
        b64 = shape.endswith("base64")
        return app.lambda_handler, {
            "version": "2.0", "rawPath": "/events", "rawQueryString": f"token={TOKEN}",
            "headers": {"content-type": "text/plain"},
            "requestContext": {"http": {"method": "POST", "path": "/events"}, "requestId": "r"},
            "body": base64.b64encode(body).decode() if b64 else _text(body), "isBase64Encoded": b64}
    if shape == "aws-rest-v1":
        return app.lambda_handler, {
            "httpMethod": "POST", "path": "/events", "headers": {"Authorization": f"Bearer {TOKEN}"},
            "queryStringParameters": None, "requestContext": {"requestId": "r"}, "body": _text(body),
            "isBase64Encoded": False}
    if shape == "scf-cmq":
        return app.main_handler, {"Records": [{"CMQ": {"msgId": "m", "msgBody": _text(body)}}]}
    raise AssertionError(shape)


SHAPES = ["scf-apigw", "aws-v2", "aws-v2-base64", "aws-rest-v1", "scf-cmq"]


# --- the fuzz -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_hostile_bodies_in_every_shape_never_get_a_5xx_a_crash_or_a_retry(target: Target, shape: str) -> None:
    @FUZZ
    @given(body=hostile_body(target))
    def run(body: bytes) -> None:
        entry, event = wrap(shape, body)
        target.invoke(entry, event)

    run()


EVENT_KEYS = ["requestContext", "httpMethod", "headers", "body", "isBase64Encoded", "Records", "Type",
              "Events", "msgBody", "queryString", "queryStringParameters", "rawQueryString", "rawPath",
              "path", "detail-type", "source", "version", "headerParameters", "msgId"]


@st.composite
def hostile_event(draw: st.DrawFn) -> Any:
    """Events of any shape and type: keys each trigger looks for, holding values of any type."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)
    event = draw(st.dictionaries(st.sampled_from(EVENT_KEYS), json_value, max_size=6))
    if draw(st.booleans()):
        event["requestContext"] = {"http": draw(json_value), "requestId": draw(json_leaf)}
    if draw(st.booleans()):
        event["Records"] = draw(st.lists(st.fixed_dictionaries({"CMQ": json_value}), max_size=3))
    return event


@pytest.mark.parametrize("entry", [app.main_handler, app.lambda_handler], ids=["scf", "lambda"])
def test_events_of_any_shape_and_type_never_get_a_5xx_a_crash_or_a_retry(
    target: Target, entry: Entry
) -> None:
    @FUZZ
    @given(event=hostile_event())
    def run(event: Any) -> None:
        target.invoke(entry, event)

    run()


# --- size: refused before parsing -----------------------------------------------------------------

def _valid_notice_for(job: str) -> dict[str, Any]:
    return {"Events": [{"EventName": "JOB_FAILED", "Region": "ap-guangzhou", "Batch": {"JobId": job}}]}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_body_over_the_limit_is_refused_with_413_before_anything_parses_it(
    target: Target, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A valid notice naming the FAILED job, padded past the limit: parsed, it would be retried.
    notice = _valid_notice_for(target.failed)
    notice["pad"] = "x" * MAX_BODY_BYTES
    body = json.dumps(envelope(json.dumps(notice))).encode()
    parsed: list[int] = []
    real_loads = json.loads

    def counting_loads(s: Any, *a: Any, **kw: Any) -> Any:
        if len(s) > MAX_BODY_BYTES:
            parsed.append(len(s))
        return real_loads(s, *a, **kw)

    monkeypatch.setattr(json, "loads", counting_loads)
    entry, event = wrap(shape, body)
    answer = target.invoke(entry, event)
    assert answer["statusCode"] == 400 if shape == "scf-cmq" else answer["statusCode"] == 413
    assert "larger than" in answer["body"]
    assert parsed == []


# --- credentials: forged, stale and replayed ---------------------------------------------------------

def _signed_event(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return apigw_event("POST", "/events", {"Content-Type": "text/plain", **headers}, body)


@st.composite
def forged_credentials(draw: st.DrawFn) -> dict[str, str]:
    kind = draw(st.sampled_from(["token", "bearer", "hex", "other_secret", "stale", "future", "junk"]))
    now = int(time.time())
    hexsig = "sha256=" + draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    if kind == "token":
        return {"__query": "?token=" + draw(st.text(max_size=40).filter(lambda t: t != TOKEN))}
    if kind == "bearer":
        return {"Authorization": "Bearer " + draw(st.text(max_size=40).filter(lambda t: t.strip() != TOKEN))}
    if kind == "hex":
        return {"X-Autoretry-Timestamp": str(now), "X-Autoretry-Signature": hexsig}
    if kind == "other_secret":
        return {"__sign_with": draw(st.text(min_size=1, max_size=30).filter(lambda s: s != HMAC_SECRET))}
    if kind in ("stale", "future"):
        skew = draw(st.integers(301, 10**6))
        return {"__sign_at": str(now - skew if kind == "stale" else now + skew)}
    return {k: draw(st.text(max_size=30)) for k in ("X-Autoretry-Timestamp", "X-Autoretry-Signature")}


def test_forged_tokens_and_signatures_are_401_and_never_retry(target: Target) -> None:
    body = json.dumps(_valid_notice_for(target.failed)).encode()

    @FUZZ
    @given(creds=forged_credentials())
    def run(creds: dict[str, str]) -> None:
        creds = dict(creds)
        query = creds.pop("__query", "")
        if "__sign_with" in creds:
            creds.update(auth.signed_headers(creds.pop("__sign_with"), body))
        if "__sign_at" in creds:
            creds.update(auth.signed_headers(HMAC_SECRET, body, now=float(creds.pop("__sign_at"))))
        event = apigw_event("POST", "/events" + query, {"Content-Type": "text/plain", **creds}, body)
        answer = target.invoke(app.main_handler, event)
        assert answer["statusCode"] == 401
        assert json.loads(answer["body"]) == {"error": "unauthorized"}

    run()
    assert target.emu.retry_counts()[target.failed] == 0


def test_a_replayed_signature_is_refused_and_the_failure_is_retried_once(
    module_emu: Emulator, target: Target
) -> None:
    job = module_emu.add_failed_job(f"replayed-{uuid.uuid4().hex[:6]}", [Outcome.succeed()])
    body = json.dumps(_valid_notice_for(job)).encode()
    headers = auth.signed_headers(HMAC_SECRET, body)
    first = app.main_handler(_signed_event(body, headers), {"time_limit_in_ms": 10_000})
    assert first["statusCode"] == 200
    replays = [app.main_handler(_signed_event(body, headers), {"time_limit_in_ms": 10_000})
               for _ in range(5)]
    # and through the other entry point, as an attacker who captured the request would try
    lambda_event = {"version": "2.0", "rawPath": "/events", "rawQueryString": "",
                    "headers": {k.lower(): v for k, v in headers.items()},
                    "requestContext": {"http": {"method": "POST", "path": "/events"}, "requestId": "r"},
                    "body": body.decode(), "isBase64Encoded": False}
    replays.append(app.lambda_handler(lambda_event, LambdaContext()))
    assert [r["statusCode"] for r in replays] == [401] * 6
    assert module_emu.retry_counts()[job] == 1


# --- a forged job id cannot hold other jobs back ------------------------------------------------------

def test_a_forged_job_id_the_api_calls_malformed_does_not_hold_back_other_retries_or_stay_queued(
    module_emu: Emulator, target: Target
) -> None:
    # Not an id the Batch API accepts: the whole DescribeJobs batch it rides in is refused with
    # InvalidParameter.JobIdMalformed. Ingress refuses it at the door now; the retrier must still
    # isolate one that reaches the queue another way (a ledger written by an older version).
    job = module_emu.add_failed_job(f"neighbour-{uuid.uuid4().hex[:6]}", [Outcome.succeed()])
    with pytest.raises(BadInput, match="not a Batch job id"):
        read_notice(json.dumps(_valid_notice_for("job-FORGED0001")).encode())
    rt = app.runtime()
    retrier = rt.retrier(Observer())

    # Both are in the queue before anyone flushes: one DescribeJobs batch would carry both.
    for job_id in ("job-FORGED0001", job):
        retrier.enqueue(JobRef("ap-guangzhou", job_id), "JOB_FAILED", {})
    started = time.time()
    retrier.drain(Deadline.after(10), linger_s=2)
    assert module_emu.retry_counts()[job] == 1, "the legit job was held back by the forged id"
    assert time.time() - started < 5
    assert [e.job.job_id for e in rt.ledger.queue()] == [], "the forged entry stays queued for ever"
