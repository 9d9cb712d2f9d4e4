"""`python -m handler push` sends what a TDMQ-CMQ HTTP subscription sends; the bodies in
events/bodies are what the function accepts over HTTP."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from handler import app
from handler.auth import sign
from handler.commands import serve
from handler.commands.push import main as push
from handler.jobs import JobRef

ROOT = Path(__file__).resolve().parents[2]
BODIES = ROOT / "events" / "bodies"
JOB = "job-3k9x2m1a"


@dataclass
class Received:
    requests: list[dict[str, Any]] = field(default_factory=list)
    together: threading.Barrier | None = None  # answer only once this many requests are in


@pytest.fixture
def topic_endpoint() -> Iterator[tuple[str, Received]]:
    """An endpoint that records every request, answering 200."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                      "body": body})
            status = 200
            if received.together is not None:
                try:
                    received.together.wait(timeout=5)
                except threading.BrokenBarrierError:
                    status = 500  # the copies did not arrive at the same time
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events", received
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTORETRY_AUTH_TOKEN", "AUTORETRY_HMAC_SECRET", "AUTORETRY_REGION"):
        monkeypatch.delenv(name, raising=False)


def test_push_sends_copies_of_one_message_at_once_as_the_topic_does(
        topic_endpoint: tuple[str, Received], capsys: pytest.CaptureFixture[str]) -> None:
    url, received = topic_endpoint
    received.together = threading.Barrier(3)
    assert push([JOB, "--dups", "2", "--url", url, "--region", "ap-shanghai"]) == 0
    assert len(received.requests) == 3
    message_ids = set()
    for r in received.requests:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        assert r["path"] == "/events"
        assert headers["content-type"] == "text/plain"
        assert headers["x-cmq-message-id"] == headers["x-cmq-request-id"]
        envelope = json.loads(r["body"])
        assert envelope["msgId"] == headers["x-cmq-message-id"]
        assert {"TopicOwner", "topicName", "subscriptionName", "publishTime"} <= set(envelope)
        [event] = json.loads(envelope["msgBody"])["Events"]
        assert (event["EventName"], event["Region"], event["Batch"]) == (
            "JOB_FAILED", "ap-shanghai", {"JobId": JOB, "JobState": "FAILED"})
        message_ids.add(envelope["msgId"])
    assert len(message_ids) == 1  # copies of one message, not three messages
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" in ")[0] for line in out] == [
        f"{JOB} copy {n}/3: HTTP 200" for n in (1, 2, 3)]


def test_push_simplified_sends_the_notice_itself(topic_endpoint: tuple[str, Received]) -> None:
    url, received = topic_endpoint
    assert push([JOB, "--simplified", "--event", "JOB_FAILED_INTERRUPTED", "--url", url]) == 0
    [event] = json.loads(received.requests[0]["body"])["Events"]
    assert event["EventName"] == "JOB_FAILED_INTERRUPTED"
    assert event["Batch"] == {"JobId": JOB, "JobState": "FAILED_INTERRUPTED"}
    assert event["Region"] == "ap-guangzhou"  # the first of AUTORETRY_REGION, by default


def test_push_carries_the_token_or_signature_the_function_is_configured_with(
        topic_endpoint: tuple[str, Received], monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = topic_endpoint
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", "tok-123")
    assert push([JOB, "--url", url]) == 0
    assert received.requests[-1]["path"] == "/events?token=tok-123"
    monkeypatch.setenv("AUTORETRY_HMAC_SECRET", "hmac-456")
    assert push([JOB, "--url", url]) == 0
    signed = received.requests[-1]
    headers = {k.lower(): v for k, v in signed["headers"].items()}
    assert signed["path"] == "/events"
    assert headers["x-autoretry-signature"] == sign("hmac-456", int(headers["x-autoretry-timestamp"]),
                                                    signed["body"])


def test_push_with_nothing_listening_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert push([JOB, "--url", f"http://127.0.0.1:{closed}/events"]) == 1  # a runtime failure
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no answer from" in err[0] and "python -m handler serve" in err[0]


def test_push_refuses_negative_dups(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        push([JOB, "--dups", "-1"])
    assert info.value.code == 2
    assert "--dups cannot be negative" in capsys.readouterr().err


@pytest.mark.parametrize("body", ["push-envelope.json", "simplified-notice.json"])
def test_each_body_you_can_post_is_accepted_and_its_decision_kept(wired: Emulator, body: str) -> None:
    server = serve.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        request = urllib.request.Request(url, data=(BODIES / body).read_bytes(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
            assert json.loads(answer.read())["accepted"] == 1
    finally:
        server.shutdown()
        server.server_close()
    record = app.runtime().ledger.job(JobRef("ap-guangzhou", JOB))
    assert record is not None  # the sample job does not exist: a kept not_found decision
    assert [d["outcome"] for d in record["decisions"]] == ["not_found"]


def test_push_list_failed_names_the_jobs_the_api_lists_as_failed(
        wired: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    failed = wired.add_failed_job("broken")
    wired.add_job("fine")
    assert push(["--list-failed"]) == 0
    assert capsys.readouterr().out.split() == [failed]
