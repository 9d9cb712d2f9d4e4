"""`python -m handler wire` against the emulator's TDMQ API (the real SDK CommonClient, TC3-signed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from emulator import Emulator
from handler.commands import wire

from ..conftest import SECRET_ID, SECRET_KEY

CREATES = ("CreateCmqTopic", "CreateCmqQueue", "CreateCmqSubscribe")


@pytest.fixture
def tdmq(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    for name in ("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "AUTORETRY_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTORETRY_TDMQ_ENDPOINT", emu.endpoint)
    monkeypatch.setenv("AUTORETRY_TDMQ_PROTOCOL", "http")
    return emu


def creates(emu: Emulator) -> dict[str, int]:
    return {a: emu.count(a, error=None) for a in CREATES}


def printed_block(out: str) -> dict[str, Any]:
    start = out.index("{\n")
    block: dict[str, Any] = json.loads(out[start:out.index("\n}", start) + 2])
    return block


def test_wire_creates_topic_queues_and_queue_subscription_then_notices_reach_the_queue(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--queue", "notices", "--max-receives", "4"]) == 0
    assert creates(tdmq) == {"CreateCmqTopic": 1, "CreateCmqQueue": 2, "CreateCmqSubscribe": 1}
    queue = tdmq.cmq.queues["notices"]
    assert (queue.dead_letter_queue, queue.max_receive_count) == ("notices-dead-letters", 4)
    (sub,) = tdmq.cmq.subscriptions.values()
    assert (sub.topic, sub.protocol, sub.endpoint, sub.notify_format) == (
        "batch-events", "queue", "notices", "SIMPLIFIED")
    block = printed_block(capsys.readouterr().out)
    assert block == {"NotificationTarget": "TDMQ_CMQ", "Notifications": [
        {"TopicName": "batch-events",
         "EventConfigs": [{"EventName": "JOB_FAILED"}, {"EventName": "JOB_FAILED_INTERRUPTED"}]}]}
    job = tdmq.add_failed_job("render")
    tdmq.publish(job, topic="batch-events")
    assert tdmq.cmq.depth("notices") == 1


def test_wiring_twice_creates_nothing_the_second_time(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--queue", "notices"]) == 0
    first = creates(tdmq)
    assert wire.main(["--queue", "notices"]) == 0
    assert creates(tdmq) == first
    out = capsys.readouterr().out
    assert "topic batch-events: exists" in out and "subscription batch-autoretry: exists" in out


@pytest.mark.parametrize("absent_code", ["ResourceNotFound", "FailedOperation"])
def test_a_missing_queue_is_created_whichever_code_its_details_answer(
    tdmq: Emulator, absent_code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tdmq.behaviour.absent_queue_code = absent_code
    assert wire.main(["--queue", "notices"]) == 0
    assert set(tdmq.cmq.queues) == {"notices", "notices-dead-letters"}
    assert wire.main(["--queue", "notices"]) == 0
    assert creates(tdmq) == {"CreateCmqTopic": 1, "CreateCmqQueue": 2, "CreateCmqSubscribe": 1}


def test_a_queue_whose_details_fail_but_that_exists_is_reported_as_existing(
    tdmq: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--queue", "notices"]) == 0
    capsys.readouterr()
    # The queue's details answer FailedOperation although it exists: the create that follows
    # answers ResourceInUse, and the queue is reported as there, not as an error.
    def failing(p: dict[str, Any]) -> dict[str, Any]:
        from emulator.api import ApiError
        raise ApiError("FailedOperation", "the operation failed")

    monkeypatch.setattr(tdmq.cmq, "_api_DescribeCmqQueueDetail", failing)
    assert wire.main(["--queue", "notices"]) == 0
    out = capsys.readouterr().out
    assert "queue notices: exists (its details could not be read" in out
    assert len(tdmq.cmq.queues) == 2 and tdmq.count("CreateCmqQueue", error="ResourceInUse.Queue") == 2


def test_the_notifications_block_is_offered_for_submitjob_only(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--queue", "notices"]) == 0
    out = capsys.readouterr().out
    assert "to the Job of every SubmitJob:" in out and "CreateComputeEnv" not in out


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[bytes]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events?token=t", _Recorder.bodies
    server.shutdown()
    server.server_close()


def test_http_wire_subscribes_the_endpoint_and_the_topic_pushes_to_it(
    tdmq: Emulator, endpoint: tuple[str, list[bytes]]
) -> None:
    url, bodies = endpoint
    assert wire.main(["--http", url]) == 0
    assert creates(tdmq) == {"CreateCmqTopic": 1, "CreateCmqQueue": 0, "CreateCmqSubscribe": 1}
    job = tdmq.add_failed_job("render")
    tdmq.publish(job, topic="batch-events")
    assert tdmq.wait_idle(10)
    (body,) = bodies
    assert json.loads(json.loads(body)["msgBody"])["Events"][0]["Batch"]["JobId"] == job


def test_the_push_urls_token_is_subscribed_but_never_printed(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "s3cr3t-token-value"
    assert wire.main(["--http", f"http://127.0.0.1:9/events?token={token}&x=1"]) == 0
    assert wire.main(["--http", f"http://127.0.0.1:9/events?token={token}&x=1"]) == 0
    (sub,) = tdmq.cmq.subscriptions.values()
    assert sub.endpoint.endswith(f"token={token}&x=1")  # the topic gets it
    out = capsys.readouterr()
    assert token not in out.out + out.err and "token=***&x=1" in out.out
    # the same name, another endpoint: refused, and still no token shown
    assert wire.main(["--http", f"http://127.0.0.1:9/other?token={token}"]) == 1
    out = capsys.readouterr()
    assert token not in out.out + out.err


def test_existing_subscription_to_another_endpoint_is_reported_and_left_alone(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--http", "http://198.51.100.7/events"]) == 0
    assert wire.main(["--queue", "notices"]) == 1
    err = capsys.readouterr().err
    assert "exists with http 'http://198.51.100.7/events', not queue 'notices'" in err
    assert tdmq.count("CreateCmqSubscribe") == 1 and tdmq.count("DeleteCmqSubscribe") == 0


def test_dry_run_prints_the_calls_and_makes_none(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--queue", "notices", "--dry-run"]) == 0
    assert tdmq.calls == []
    out = capsys.readouterr().out
    for action in ("DescribeCmqTopicDetail", "CreateCmqTopic", "CreateCmqQueue", "CreateCmqSubscribe"):
        assert f"would call {action} " in out
    assert '"DeadLetterQueueName": "notices-dead-letters"' in out
    assert printed_block(out)["Notifications"][0]["TopicName"] == "batch-events"


def test_an_https_endpoint_is_refused_before_any_call(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--http", "https://example.com/events"]) == 2
    assert tdmq.calls == [] and "queue pull" in capsys.readouterr().err


def test_allow_https_sends_it_and_the_api_has_the_last_word(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wire.main(["--http", "https://example.com/events", "--allow-https"]) == 1
    assert "InvalidParameterValue" in capsys.readouterr().err  # as documented: http:// only
    assert tdmq.count("CreateCmqSubscribe", error="InvalidParameterValue") == 1


def test_a_wrong_key_is_reported_without_creating_anything(
    tdmq: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "wrong")
    assert wire.main(["--queue", "notices"]) == 1
    assert "AuthFailure.SignatureFailure" in capsys.readouterr().err
    assert tdmq.cmq.topic_names == {}
