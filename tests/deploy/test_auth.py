"""Who may call the HTTP trigger: the shared token, an HMAC signature, and nothing else."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from handler import app, auth
from handler.commands.serve import apigw_event
from handler.ingress import MAX_BODY_BYTES
from tests.conftest import ledger_rows

from .conftest import deploy

TOKEN = "tok-3f9a1c77e2b04d55"
SECRET = "hmac-secret-5b2e8d0c41a9"
UNAUTHORIZED_BODY = '{"error": "unauthorized"}'


def notice(job: str = "job-abcd1234") -> bytes:
    return json.dumps({"Events": [{"EventName": "JOB_FAILED", "Region": "ap-guangzhou",
                                   "Batch": {"JobId": job}}]}).encode()


def post(body: bytes, headers: dict[str, str] | None = None, query: str = "") -> dict[str, Any]:
    event = apigw_event("POST", "/events" + query, {"Content-Type": "text/plain", **(headers or {})}, body)
    return app.main_handler(event, {"time_limit_in_ms": 3000})


def post_lambda(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    event = {"version": "2.0", "rawPath": "/events", "rawQueryString": "",
             "headers": {k.lower(): v for k, v in headers.items()},
             "requestContext": {"http": {"method": "POST", "path": "/events"}, "requestId": "r-1"},
             "body": body.decode(), "isBase64Encoded": False}
    return app.lambda_handler(event, ShortLambdaContext())


class ShortLambdaContext:
    aws_request_id = "r-1"

    def get_remaining_time_in_millis(self) -> int:
        return 3000  # too short to wait for the (unreachable) Batch API


@pytest.fixture
def deployed(function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Not local: a token and an HMAC secret configured; a fresh replay memory."""
    deploy(monkeypatch, TOKEN, SECRET)
    return function_env


def test_token_in_the_query_string_is_accepted(deployed: Path) -> None:
    assert post(notice(), query=f"?token={TOKEN}")["statusCode"] == 200
    assert ledger_rows(deployed) >= 1


def test_bearer_token_is_accepted_on_both_entry_points(deployed: Path) -> None:
    assert post(notice(), {"Authorization": f"Bearer {TOKEN}"})["statusCode"] == 200
    assert post_lambda(notice("job-abcd9999"), {"Authorization": f"Bearer {TOKEN}"})["statusCode"] == 200


@pytest.mark.parametrize("headers,query", [
    ({}, "?token=wrong-token"),
    ({"Authorization": "Bearer wrong-token"}, ""),
    ({"Authorization": "Bearer wrong-token"}, f"?token={TOKEN}"),  # the header is what counts
    ({"Authorization": f"Basic {TOKEN}"}, ""),
    ({}, "?token="),
    ({}, ""),
])
def test_wrong_or_missing_token_is_401_with_no_detail_and_records_nothing(
    deployed: Path, headers: dict[str, str], query: str
) -> None:
    answer = post(notice(), headers, query)
    assert answer["statusCode"] == 401
    assert answer["body"] == UNAUTHORIZED_BODY
    assert ledger_rows(deployed) == 0


def test_valid_hmac_signature_is_accepted(deployed: Path) -> None:
    body = notice()
    assert post(body, auth.signed_headers(SECRET, body))["statusCode"] == 200
    assert ledger_rows(deployed) >= 1


def test_signature_over_another_body_is_refused(deployed: Path) -> None:
    headers = auth.signed_headers(SECRET, notice("job-other0001"))
    answer = post(notice(), headers)
    assert (answer["statusCode"], answer["body"]) == (401, UNAUTHORIZED_BODY)
    assert ledger_rows(deployed) == 0


def test_signature_with_another_secret_is_refused(deployed: Path) -> None:
    body = notice()
    assert post(body, auth.signed_headers("not-the-secret", body))["statusCode"] == 401


@pytest.mark.parametrize("skew", [-301, 301])
def test_signature_outside_the_five_minute_window_is_refused(deployed: Path, skew: int) -> None:
    body = notice()
    answer = post(body, auth.signed_headers(SECRET, body, now=time.time() + skew))
    assert (answer["statusCode"], answer["body"]) == (401, UNAUTHORIZED_BODY)


def test_signature_inside_the_window_is_accepted(deployed: Path) -> None:
    body = notice()
    assert post(body, auth.signed_headers(SECRET, body, now=time.time() - 290))["statusCode"] == 200


def test_replayed_signature_is_refused(deployed: Path) -> None:
    body = notice()
    headers = auth.signed_headers(SECRET, body)
    assert post(body, headers)["statusCode"] == 200
    replay = post(body, headers)
    assert (replay["statusCode"], replay["body"]) == (401, UNAUTHORIZED_BODY)


def test_signature_header_without_timestamp_is_refused(deployed: Path) -> None:
    body = notice()
    headers = auth.signed_headers(SECRET, body)
    del headers["X-Autoretry-Timestamp"]
    assert post(body, headers)["statusCode"] == 401


def test_a_bad_signature_is_not_rescued_by_a_good_token(deployed: Path) -> None:
    body = notice()
    headers = {**auth.signed_headers("not-the-secret", body), "Authorization": f"Bearer {TOKEN}"}
    assert post(body, headers)["statusCode"] == 401


def test_body_over_one_mebibyte_is_413_before_authentication_or_parsing(deployed: Path) -> None:
    answer = post(b"{" + b" " * MAX_BODY_BYTES + b"}", query=f"?token={TOKEN}")
    assert answer["statusCode"] == 413
    assert post(b"x" * (MAX_BODY_BYTES + 1))["statusCode"] == 413  # no credential needed to be told
    assert ledger_rows(deployed) == 0


def test_body_of_exactly_one_mebibyte_is_read(deployed: Path) -> None:
    answer = post(b" " * (MAX_BODY_BYTES - 2) + b"{}", query=f"?token={TOKEN}")
    assert answer["statusCode"] == 400
    assert "no Events" in json.loads(answer["body"])["error"]


def test_without_token_or_secret_the_http_trigger_refuses_with_503(
    function_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTORETRY_LOCAL", "false")
    answer = post(notice(), query="?token=anything")
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"]) == {"error": "endpoint not configured"}
    assert "AUTORETRY_AUTH_TOKEN" in capsys.readouterr().out
    assert ledger_rows(function_env) == 0


def test_local_mode_without_credentials_lets_requests_through(function_env: Path) -> None:
    assert post(notice())["statusCode"] == 200


def test_credentials_never_reach_the_logs_or_the_answer(
    deployed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = notice()
    answers = [
        post(body, query=f"?token={TOKEN}x"),
        post(body, {"Authorization": f"Bearer {TOKEN}y"}),
        post(body, auth.signed_headers(SECRET + "z", body)),
        post(body, query=f"?token={TOKEN}"),
    ]
    out = capsys.readouterr().out
    for secret in (TOKEN, SECRET):
        assert secret not in out
        assert all(secret not in json.dumps(a) for a in answers)
    assert out.count('"unauthorized request"') == 3


def test_replay_guard_forgets_a_signature_once_its_window_has_passed() -> None:
    guard = auth.ReplayGuard(window_s=300)
    assert guard.first_sight("sha256=aa", timestamp=1000, now=1000)
    assert not guard.first_sight("sha256=aa", timestamp=1000, now=1299)
    assert guard.first_sight("sha256=bb", timestamp=2000, now=2000)  # purges the expired one
    assert "sha256=aa" not in guard._seen


def test_replay_guard_holds_at_most_its_capacity() -> None:
    guard = auth.ReplayGuard(window_s=300, capacity=3)
    for i in range(10):
        guard.first_sight(f"sha256={i}", timestamp=1000, now=1000)
    assert len(guard._seen) <= 3


@pytest.mark.parametrize("placeholder", ["${env:AUTORETRY_AUTH_TOKEN}", "{{resolve:ssm:/x/auth-token}}"])
def test_an_unresolved_deployment_variable_is_no_token_at_all(
    function_env: Path, monkeypatch: pytest.MonkeyPatch, placeholder: str
) -> None:
    monkeypatch.setenv("AUTORETRY_LOCAL", "false")
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", placeholder)
    answer = post(notice(), {"Authorization": f"Bearer {placeholder}"})
    assert answer["statusCode"] == 503
    assert ledger_rows(function_env) == 0
