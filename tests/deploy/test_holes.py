"""Holes found by attacking the function (issue 14, holes 3, 4, 6, 7, 8 and the generic 503 of 9),
each reproduced through both entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.local import free_port as closed_port  # a loopback port nobody listens on
from handler import app
from handler.commands.serve import apigw_event
from handler.ledger import describe_store
from tests.conftest import ledger_rows

from .conftest import LambdaContext, deploy, scf_context

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-holes-51c0e2d9a7"
ENTRIES = ["main_handler", "lambda_handler"]


def notice(job: str = "job-h01e5abc") -> bytes:
    return json.dumps({"Events": [{"EventName": "JOB_FAILED", "Region": "ap-guangzhou",
                                   "Batch": {"JobId": job}}]}).encode()


def post(entry: str, body: bytes = b"", headers: dict[str, str] | None = None,
         path: str = "/events", query: dict[str, str] | None = None) -> dict[str, Any]:
    event = apigw_event("POST", path, {"Content-Type": "text/plain", **(headers or {})}, body or notice())
    if query is not None:
        event["queryString"] = event["queryStringParameters"] = query
    if entry == "lambda_handler":
        return app.lambda_handler(event, LambdaContext(3))
    return app.main_handler(event, scf_context(3))


@pytest.fixture
def deployed(function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    deploy(monkeypatch, TOKEN)
    return function_env


# --- hole 3: a Redis password with an unencoded / # ? never leaks ------------------------------------

PASSWORDS = ["pa/ss9Wq", "pa#ss9Wq", "pa?ss9Wq", "p/a#s?s@9Wq", "9Wq:/x"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("form", ["redis://:{p}@127.0.0.1:{port}/0", "redis://user:{p}@127.0.0.1:{port}/0",
                                  "rediss://:{p}@cache.internal:{port}/2?prefix=ar:"])
def test_describe_store_never_shows_a_password_however_it_is_spelled(form: str, password: str) -> None:
    url = form.format(p=password, port=6380)
    shown = describe_store(url)
    assert password not in shown and "9Wq" not in shown
    assert shown.startswith(url.split(":", 1)[0] + "://***@")


def test_a_redis_url_with_an_unencoded_password_reaches_a_server_that_requires_it(
    tmp_path: Path
) -> None:
    from bench.soak import RedisServer
    from handler.jobs import JobRef
    from handler.ledger import Ledger, open_store

    password = "p/a#s?s@9Wq"
    server = RedisServer(tmp_path, password=password).start()
    try:
        store = open_store(f"redis://:{password}@127.0.0.1:{server.port}/3?prefix=holes:")
        try:
            ledger = Ledger(store, retention_s=3600)
            ledger.enqueue(JobRef("ap-guangzhou", "job-p4ssw0rd"), event_name="JOB_FAILED",
                           event_vars={})
            assert [e.job.job_id for e in ledger.queue()] == ["job-p4ssw0rd"]
        finally:
            store.close()
    finally:
        server.kill()


@pytest.mark.parametrize("bad", ["redis://:pa/ss9Wq@127.0.0.1:notaport/0",
                                 "redis://:pa/ss9Wq@127.0.0.1:99999/0",
                                 "redis://:pa/ss9Wq@127.0.0.1:6379/notadb"])
def test_a_broken_redis_url_is_refused_without_its_password(bad: str) -> None:
    from handler.ledger.redis import RedisStore

    with pytest.raises(ValueError) as info:
        RedisStore(bad)
    assert "9Wq" not in str(info.value)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("password", PASSWORDS)
def test_a_redis_password_never_reaches_the_answer_or_the_log(
    deployed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    entry: str, password: str
) -> None:
    monkeypatch.setenv("AUTORETRY_STORE", f"redis://:{password}@127.0.0.1:{closed_port()}/0")
    answer = post(entry, query={"token": TOKEN})
    out = capsys.readouterr().out
    assert answer["statusCode"] == 503
    assert password not in json.dumps(answer) and password not in out
    assert "9Wq" not in json.dumps(answer) and "9Wq" not in out


@pytest.mark.parametrize("password", ["pa/ss9Wq", "p/a#s?s@9Wq"])
def test_a_redis_password_never_reaches_a_command_line_error(password: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "AUTORETRY_STORE": f"redis://:{password}@127.0.0.1:{closed_port()}/0"}
    proc = subprocess.run([sys.executable, "-m", "handler", "ledger", "stats"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "9Wq" not in out and "Traceback" not in out


def test_a_sqlite_path_with_an_at_sign_is_shown_as_it_is() -> None:
    assert describe_store("sqlite:////srv/team@x/ledger.db") == "sqlite:////srv/team@x/ledger.db"


# --- hole 4: AUTORETRY_LOCAL=true is refused in the cloud --------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("cloud", [("TENCENTCLOUD_RUNENV", "SCF"), ("AWS_LAMBDA_FUNCTION_NAME", "autoretry")])
def test_local_mode_is_refused_in_the_cloud_and_lets_nobody_in(
    function_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    entry: str, cloud: tuple[str, str]
) -> None:
    monkeypatch.setenv(*cloud)
    monkeypatch.setenv("AUTORETRY_LOCAL", "true")
    answer = post(entry)
    assert answer["statusCode"] == 503
    assert ledger_rows(function_env) == 0
    errors = [json.loads(line) for line in capsys.readouterr().out.splitlines()
              if line.startswith("{") and '"configuration error"' in line]
    assert errors and "AUTORETRY_LOCAL" in errors[0]["error"]


# --- hole 6: a lone surrogate in a header or the query ----------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(("headers", "query"), [
    ({"Authorization": "Bearer \ud800"}, None),
    ({"Authorization": "Bearer \udcff\ud800x"}, None),
    ({}, {"token": "\ud800"}),
    ({"X-Autoretry-Timestamp": "\ud800", "X-Autoretry-Signature": "sha256=\ud800"}, None),
])
def test_a_lone_surrogate_in_a_credential_is_401_not_an_exception(
    deployed: Path, entry: str, headers: dict[str, str], query: dict[str, str] | None
) -> None:
    answer = post(entry, headers=headers, query=query)
    assert answer["statusCode"] == 401
    assert ledger_rows(deployed) == 0


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_lone_surrogate_in_the_message_id_is_logged_safely(
    deployed: Path, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = post(entry, headers={"x-cmq-message-id": "\ud800id"}, query={"token": TOKEN})
    assert answer["statusCode"] == 200
    assert capsys.readouterr().out


# --- hole 7: a token in the path is never logged -----------------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("path", ["/events;token=PATHSECRET1", "/events%3Ftoken=PATHSECRET1",
                                  "/events/PATHSECRET1", "/PATHSECRET1"])
def test_the_log_names_the_route_never_the_raw_path(
    deployed: Path, capsys: pytest.CaptureFixture[str], entry: str, path: str
) -> None:
    assert post(entry, path=path)["statusCode"] == 401
    out = capsys.readouterr().out
    assert "PATHSECRET1" not in out
    (line,) = [json.loads(x) for x in out.splitlines() if '"unauthorized request"' in x]
    assert line["route"] in ("/events", "/")


# --- hole 8: a whitespace-only token is no token -----------------------------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("blank", ["   ", "\t", " \n "])
def test_a_blank_configured_token_is_unset_and_accepts_nothing(
    function_env: Path, monkeypatch: pytest.MonkeyPatch, entry: str, blank: str
) -> None:
    monkeypatch.setenv("AUTORETRY_LOCAL", "false")
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", blank)
    monkeypatch.setenv("AUTORETRY_HMAC_SECRET", blank)
    for answer in (post(entry, query={"token": blank}), post(entry, headers={"Authorization": "Bearer  "})):
        assert answer["statusCode"] == 503
        assert json.loads(answer["body"]) == {"error": "endpoint not configured"}
    assert ledger_rows(function_env) == 0


# --- hole 9 (part): configuration errors reach callers as a generic 503 ------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(("name", "value", "detail"), [
    ("AUTORETRY_REGION", "Mars Base", "Mars Base"),
    ("AUTORETRY_POLICY", "version: 1\nrules: [{action: NOPE}]", "NOPE"),
    ("AUTORETRY_STORE", "bogus://secret-host/x", "secret-host"),
    ("AUTORETRY_RETENTION_HOURS", "-5", "RETENTION"),
])
def test_a_configuration_error_is_a_generic_503_with_the_detail_only_in_the_log(
    function_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    entry: str, name: str, value: str, detail: str
) -> None:
    monkeypatch.setenv(name, value)
    answer = post(entry)  # unauthenticated: local mode, as a first-time deployer would run it
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"]) == {"error": "function misconfigured; see its log"}
    assert detail in capsys.readouterr().out


# --- found while fuzzing: a number too long for Python's int conversion -----------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("where", ["notice", "envelope", "msgBody"])
def test_a_number_of_thousands_of_digits_is_a_400_not_an_exception(
    deployed: Path, entry: str, where: str
) -> None:
    huge = "7" * 5000  # json.loads raises ValueError, not JSONDecodeError, past 4300 digits
    inner = ('{"Events": [{"EventName": "JOB_FAILED", "Batch": {"JobId": "job-h01e5abc"}, '
             '"EventTime": HUGE}]}').replace("HUGE", huge)
    body = {
        "notice": inner,
        "envelope": '{"msgBody": "{}", "msgId": HUGE}'.replace("HUGE", huge),
        "msgBody": json.dumps({"msgBody": inner, "msgId": "1"}),
    }[where]
    answer = post(entry, body=body.encode(), query={"token": TOKEN})
    assert answer["statusCode"] == 400
    assert ledger_rows(deployed) == 0
