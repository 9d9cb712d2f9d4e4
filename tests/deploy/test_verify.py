"""`python -m handler verify` against the function served in-process by `python -m handler serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from handler import app
from handler.__main__ import main as cli
from handler.commands import serve
from tests.core.fakes import FakeGateway

from .conftest import Deployed, deploy

TOKEN = "verify-token-8c1f0e2a"
SECRET = "verify-secret-47d9b6e3"


@pytest.fixture
def endpoint(function: Deployed, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The function as deployed (token and secret set, not local), on a loopback port."""
    deploy(monkeypatch, TOKEN, SECRET)
    server = serve.start(runtime=function.runtime)
    yield f"http://127.0.0.1:{server.server_address[1]}/events"
    server.shutdown()
    server.server_close()


def decisions(out: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "decision"]


def test_verify_with_the_token_gets_200_and_retries_nothing(
    endpoint: str, fake_batch: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["verify", endpoint, "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "HTTP 200" in out and "OK: authenticated" in out
    assert TOKEN not in out
    assert fake_batch.retried == []
    (decision,) = decisions(out)
    assert decision["outcome"] == "not_found"
    assert str(decision["correlation_id"]).startswith("verify-")


def test_verify_with_the_token_already_in_the_url(
    endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTORETRY_HMAC_SECRET")  # else verify would sign with it
    assert cli(["verify", f"{endpoint}?token={TOKEN}"]) == 0
    out = capsys.readouterr().out
    assert "token in the URL" in out and "token=***" in out and TOKEN not in out


def test_verify_signed_with_the_hmac_secret_gets_200(
    endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["verify", endpoint, "--hmac-secret", SECRET]) == 0
    out = capsys.readouterr().out
    assert "HMAC-signed" in out and "HTTP 200" in out
    assert SECRET not in out


def test_verify_reads_the_token_from_the_environment(
    endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTORETRY_HMAC_SECRET")  # the sender side: only a token at hand
    assert cli(["verify", endpoint]) == 0
    assert "token in the query string" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--token", "wrong"], ["--hmac-secret", "wrong"]])
def test_verify_with_a_wrong_credential_reports_401_and_fails(
    endpoint: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["verify", endpoint, *args]) == 1
    out = capsys.readouterr().out
    assert "HTTP 401" in out and "refused" in out


def test_verify_explains_an_endpoint_without_credentials(
    endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTORETRY_AUTH_TOKEN")
    monkeypatch.delenv("AUTORETRY_HMAC_SECRET")
    assert cli(["verify", endpoint, "--token", TOKEN]) == 1
    out = capsys.readouterr().out
    assert "HTTP 503" in out and "endpoint not configured" in out


def test_verify_reports_no_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["verify", "http://127.0.0.1:9/events", "--token", TOKEN, "--timeout", "2"]) == 1
    assert "no answer" in capsys.readouterr().out


def test_verify_refuses_a_url_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["verify", "ftp://example.invalid/x"]) == 2


def test_verify_is_listed_in_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--help"]) == 0
    assert "verify URL" in capsys.readouterr().out


def test_verify_notice_is_one_the_function_accepts() -> None:
    from handler.commands.verify import _notice
    from handler.ingress import read_notice

    notice, _ = read_notice(_notice("job-vrfy0123"))
    assert notice.Events[0].is_job_failure
    assert notice.Events[0].Batch.JobId == "job-vrfy0123"



def test_verify_spots_a_gateway_without_integrated_response(
    capsys: pytest.CaptureFixture[str]
) -> None:
    # An SCF API Gateway without integrated response answers 200 with the function's answer as body.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class PassThrough(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(app.main_handler({"what": "is this"}, {})).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), PassThrough)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        assert cli(["verify", url, "--token", TOKEN]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert "integrated response" in capsys.readouterr().out
