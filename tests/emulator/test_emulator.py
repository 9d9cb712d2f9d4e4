"""The emulator speaks the real protocol: the real SDK against it, signature checked, real codes."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from emulator import Emulator, Faults, Outcome
from emulator.api import RateLimiter
from handler.gateway import ApiError, BatchGateway, Credentials, ErrorKind

SECRET_ID, SECRET_KEY = "AKIDEMUTEST", "emu-test-secret"
REGION = "ap-guangzhou"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(SECRET_ID, SECRET_KEY, speedup=20.0, run_s=1.0) as e:
        yield e


def gateway(emu: Emulator, key: str = SECRET_KEY) -> BatchGateway:
    return BatchGateway(endpoint=emu.endpoint, protocol="http",
                        credentials=lambda: Credentials(SECRET_ID, key, None), timeout_s=2.0)


def raw_post(emu: Emulator, action: str, body: bytes, headers: dict[str, str]
             ) -> tuple[int, dict[str, str], bytes]:
    host, port = emu.endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", "/", body=body, headers={"X-TC-Action": action, "X-TC-Version": "2017-03-12",
                                                   **headers})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def test_sdk_call_is_verified_and_answered_with_exact_json_content_type(emu: Emulator) -> None:
    job = emu.add_failed_job("a", [Outcome.succeed()])
    views = gateway(emu).describe_jobs(REGION, [job])
    assert views[job].JobState == "FAILED"
    assert emu.calls[-1]["action"] == "DescribeJobs" and emu.calls[-1]["error"] is None


def test_wrong_secret_key_is_refused_with_signature_failure(emu: Emulator) -> None:
    job = emu.add_failed_job("a")
    with pytest.raises(ApiError) as err:
        gateway(emu, key="wrong").retry_jobs(REGION, [job])
    assert err.value.code == "AuthFailure.SignatureFailure"
    assert emu.retry_counts()[job] == 0


def test_unsigned_request_gets_an_error_inside_http_200(emu: Emulator) -> None:
    now = str(int(time.time()))
    status, headers, body = raw_post(emu, "RetryJobs", b'{"JobIds": []}',
                                     {"Content-Type": "application/json", "X-TC-Timestamp": now})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)["Response"]
    assert answer["Error"]["Code"] == "AuthFailure.InvalidAuthorization"
    assert answer["RequestId"]


def test_signature_older_than_five_minutes_is_expired(emu: Emulator) -> None:
    emu.clock = lambda: time.time() + 301
    with pytest.raises(ApiError) as err:
        gateway(emu).describe_jobs(REGION, [emu.add_failed_job("a")])
    assert err.value.code == "AuthFailure.SignatureExpire"


def test_retry_jobs_only_retries_failed_jobs_and_is_all_or_nothing(emu: Emulator) -> None:
    failed = emu.add_failed_job("f", [Outcome.succeed()])
    running = emu.add_job("r", [Outcome.succeed()])
    with pytest.raises(ApiError) as err:
        gateway(emu).retry_jobs(REGION, [failed, running])
    assert err.value.code == "UnsupportedOperation" and err.value.kind == ErrorKind.REJECTED
    assert emu.retry_counts()[failed] == 0
    gateway(emu).retry_jobs(REGION, [failed])
    assert emu.retry_counts()[failed] == 1
    assert emu.job(failed)["state"] == "RUNNING"


@pytest.mark.parametrize(("job_id", "code"), [("job-zzzzzzzz", "ResourceNotFound.Job"),
                                              ("nope", "InvalidParameter.JobIdMalformed")])
def test_retry_jobs_names_unknown_and_malformed_ids(emu: Emulator, job_id: str, code: str) -> None:
    with pytest.raises(ApiError) as err:
        gateway(emu).retry_jobs(REGION, [job_id])
    assert err.value.code == code


def test_retried_job_fails_again_with_a_later_end_time(emu: Emulator) -> None:
    bug = Outcome.fail("exit 1", 1)
    job = emu.add_failed_job("bug", [bug, bug])
    first = emu.job(job)["end_time"]
    gateway(emu).retry_jobs(REGION, [job])
    assert emu.wait_idle(5)
    again = emu.job(job)
    assert again["state"] == "FAILED" and again["end_time"] > first and again["runs"] == 2


def test_describe_jobs_filters_by_state_and_pages(emu: Emulator) -> None:
    failed = {emu.add_failed_job(f"f{i}") for i in range(5)}
    emu.add_job("running", [Outcome.succeed()])
    gw = gateway(emu)
    seen: set[str] = set()
    for offset in (0, 2, 4):
        views, total = gw.list_jobs(REGION, "FAILED", offset, limit=2)
        assert total == 5
        seen |= {v.JobId for v in views}
        time.sleep(0.06)  # the rate limit (2/s, scaled x20)
    assert seen == failed


def test_describe_job_and_task_carry_reason_and_exit_code(emu: Emulator) -> None:
    job = emu.add_failed_job("oom", reason="OOMKilled", exit_code=137)
    detail = gateway(emu).describe_job(REGION, job)
    assert detail.StateReason == "OOMKilled"
    instance = detail.TaskSet[0].TaskInstanceSet[0]
    assert (instance.ExitCode, instance.StateReason) == (137, "OOMKilled")


def test_rate_limit_answers_request_limit_exceeded_beyond_the_documented_rate() -> None:
    limiter = RateLimiter({"RetryJobs": 2}, speedup=1.0)
    assert [limiter.allow("RetryJobs", now=t) for t in (0.0, 0.1, 0.2, 1.05, 1.11)] == \
        [True, True, False, True, True]


def test_burst_of_calls_is_throttled_at_the_emulator(emu: Emulator) -> None:
    job = emu.add_failed_job("a")
    codes = []
    for _ in range(6):
        try:
            gateway(emu).describe_jobs(REGION, [job])
            codes.append("ok")
        except ApiError as e:
            codes.append(e.code)
    assert codes.count("ok") >= 2 and "RequestLimitExceeded" in codes


def test_lost_answer_fault_applies_the_retry_but_the_caller_sees_an_ambiguous_error() -> None:
    faults = Faults(rate=1.0, kinds=("lost_answer",), actions=("RetryJobs",))
    with Emulator(SECRET_ID, SECRET_KEY, speedup=20.0, faults=faults) as emu:
        job = emu.add_failed_job("a", [Outcome.succeed()])
        with pytest.raises(ApiError) as err:
            gateway(emu).retry_jobs(REGION, [job])
        assert err.value.kind == ErrorKind.AMBIGUOUS
        assert emu.retry_counts()[job] == 1


@pytest.mark.parametrize("kind", ["internal_error", "throttle", "http_500", "reset"])
def test_other_faults_apply_nothing(kind: str) -> None:
    faults = Faults(rate=1.0, kinds=(kind,), actions=("RetryJobs",))
    with Emulator(SECRET_ID, SECRET_KEY, speedup=20.0, faults=faults) as emu:
        job = emu.add_failed_job("a", [Outcome.succeed()])
        with pytest.raises(ApiError):
            gateway(emu).retry_jobs(REGION, [job])
        assert emu.retry_counts()[job] == 0
        assert faults.injected == {kind: 1}


class _Subscriber(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    fail_first = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with lock:
            self.received.append({"headers": dict(self.headers), "body": body.decode()})
            status = 500 if len(self.received) <= _Subscriber.fail_first else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


lock = threading.Lock()


@pytest.fixture
def subscriber() -> Iterator[tuple[str, type[_Subscriber]]]:
    _Subscriber.received, _Subscriber.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Subscriber)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events?token=t", _Subscriber
    server.shutdown()


def test_failure_notice_is_pushed_as_a_cmq_envelope_and_redelivered_after_a_5xx(
    emu: Emulator, subscriber: tuple[str, type[_Subscriber]]
) -> None:
    url, sub = subscriber
    sub.fail_first = 1
    emu.subscribe("batch-events", url)
    job = emu.add_job("x", [Outcome.fail("CVM_SPOT_RECLAIMED", None)], topic="batch-events")
    assert emu.wait_idle(10)
    assert len(sub.received) == 2  # the 500 was redelivered once
    push = sub.received[-1]
    assert push["headers"]["Content-Type"] == "text/plain"
    assert push["headers"]["x-cmq-message-id"]
    envelope = json.loads(push["body"])
    notice = json.loads(envelope["msgBody"])
    event = notice["Events"][0]
    assert event["EventName"] == "JOB_FAILED" and event["Batch"]["JobId"] == job
    assert event["Batch"]["EndTime"] == emu.job(job)["end_time"]


def test_subscription_sends_duplicates_and_simplified_bodies(
    emu: Emulator, subscriber: tuple[str, type[_Subscriber]]
) -> None:
    url, sub = subscriber
    emu.subscribe("t", url, format="simplified", duplicates=2, concurrent_duplicates=True)
    job = emu.add_failed_job("x")
    emu.publish(job, topic="t")
    assert emu.wait_idle(10)
    assert len(sub.received) == 3
    assert all(json.loads(p["body"])["Events"][0]["Batch"]["JobId"] == job for p in sub.received)
