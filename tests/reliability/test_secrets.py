"""Secrets never leave: whatever fails — the API's signature check, every fault the API can throw,
the store (down, or refusing our password), bad input, bad credentials at the trigger, the command
line — no secret key, session token, trigger token, HMAC secret or store password appears in a log
line, an answer body or an error, on stdout or stderr, in this process or a child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bench.soak import RedisServer, free_port
from emulator import Emulator, Faults, Outcome
from emulator.faults import KINDS
from handler import app, auth, continuation
from handler.commands.serve import apigw_event

from .conftest import SECRET_ID, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
SESSION_TOKEN = "st-LEAKCANARY-session-7d1e0c55a2b94f"
TRIGGER_TOKEN = "tok-LEAKCANARY-trigger-3a9f"
HMAC_SECRET = "hmac-LEAKCANARY-secret-91c2"
REDIS_PASSWORD = "pw-LEAKCANARY-redis-5e7b"
SECRETS = (SECRET_KEY, SESSION_TOKEN, TRIGGER_TOKEN, HMAC_SECRET, REDIS_PASSWORD)


def leaks(text: str) -> list[str]:
    found = []
    for secret in SECRETS:
        for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
            if form in text:
                found.append(secret)
    return found


def notice(job: str) -> bytes:
    return json.dumps({"Events": [{"EventName": "JOB_FAILED", "Region": "ap-guangzhou",
                                   "Batch": {"JobId": job}}]}).encode()


def push(body: bytes, query: str = f"?token={TRIGGER_TOKEN}", headers: dict[str, str] | None = None,
         limit_ms: int = 8000) -> dict[str, Any]:
    event = apigw_event("POST", "/events" + query, {"Content-Type": "text/plain", **(headers or {})}, body)
    try:
        return app.main_handler(event, {"time_limit_in_ms": limit_ms})
    except Exception as e:  # what the platform would log for a failed invocation
        return {"statusCode": 599, "body": f"{type(e).__name__}: {e}"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0, faults=Faults()) as e:
        yield e


@pytest.fixture
def deployed(emu: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """SCF role credentials (with a session token), a trigger token and an HMAC secret."""
    monkeypatch.setenv("AUTORETRY_LOCAL", "false")
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", TRIGGER_TOKEN)
    monkeypatch.setenv("AUTORETRY_HMAC_SECRET", HMAC_SECRET)
    monkeypatch.setenv("AUTORETRY_BATCH_ENDPOINT", emu.endpoint)
    monkeypatch.setenv("AUTORETRY_BATCH_PROTOCOL", "http")
    monkeypatch.setenv("AUTORETRY_API_SPEEDUP", "20")
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", SECRET_KEY)
    monkeypatch.setenv("TENCENTCLOUD_SESSIONTOKEN", SESSION_TOKEN)
    monkeypatch.setattr(app, "_replay_guard", auth.ReplayGuard())
    app.reset_runtime()
    return emu


# --- what fails ---------------------------------------------------------------------------------------

def api_refuses_the_signature(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    emu.secrets = {SECRET_ID: "another-key"}  # the service no longer knows our key
    job = emu.add_failed_job("a", [Outcome.succeed()])
    return [push(notice(job))]


def api_faults_of_every_kind(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    answers = []
    emu.faults.timeout_s = 1.2
    for kind in KINDS:
        emu.faults.kinds, emu.faults.rate = (kind,), 1.0
        answers.append(push(notice(emu.add_failed_job(kind, [Outcome.succeed()])), limit_ms=4000))
        # The push meets the fault itself, or, if a continuation an earlier push started holds the
        # drainer lease, knocks on it and leaves the call to that continuation: wait for the call
        # while a continuation runs.
        while kind not in emu.faults.injected and continuation.settle(0.05)[1]:
            pass
    emu.faults.rate = 0.0
    assert set(emu.faults.injected) == set(KINDS)
    return answers


def api_unreachable(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    mp.setenv("AUTORETRY_BATCH_ENDPOINT", f"127.0.0.1:{free_port()}")
    app.reset_runtime()
    return [push(notice(emu.add_failed_job("a", [Outcome.succeed()])), limit_ms=4000)]


def store_down(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    mp.setenv("AUTORETRY_STORE", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0")
    app.reset_runtime()
    return [push(notice("job-abcd1234")), push(b"", query="", headers={})]


def store_refuses_the_password(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    server = RedisServer(tmp, password="the-real-one").start()
    try:
        mp.setenv("AUTORETRY_STORE", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0")
        app.reset_runtime()
        return [push(notice("job-abcd1234"))]
    finally:
        server.stop()


def store_dies_mid_flush(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    server = RedisServer(tmp, password=REDIS_PASSWORD).start()
    try:
        mp.setenv("AUTORETRY_STORE", server.url)
        app.reset_runtime()
        first = push(notice(emu.add_failed_job("a", [Outcome.succeed()])))
        server.kill()
        return [first, push(notice(emu.add_failed_job("b", [Outcome.succeed()])))]
    finally:
        server.stop()


def hostile_and_unauthorized_requests(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path
                                      ) -> list[dict[str, Any]]:
    body = notice("job-abcd1234")
    return [
        push(body, query=f"?token={TRIGGER_TOKEN}x"),
        push(body, query="", headers={"Authorization": f"Bearer {TRIGGER_TOKEN[:-1]}"}),
        push(body, query="", headers=auth.signed_headers(HMAC_SECRET + "z", body)),
        push(body, query="", headers={"X-Autoretry-Timestamp": "1", "X-Autoretry-Signature": HMAC_SECRET}),
        push(b"{" * 5000),
        push(b"\xff\xfe" + SESSION_TOKEN.encode()[:4]),
        push(json.dumps({"msgBody": 5}).encode()),
    ]


def misconfigured(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    mp.setenv("AUTORETRY_POLICY", "version: 1\nrules: [{action: NOPE}]")
    app.reset_runtime()
    first = push(notice("job-abcd1234"))
    mp.delenv("AUTORETRY_POLICY")
    mp.setenv("AUTORETRY_RETENTION_HOURS", "1")
    return [first, push(notice("job-abcd1234"))]


def command_line_failures(emu: Emulator, mp: pytest.MonkeyPatch, tmp: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "AUTORETRY_STORE": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
           "PYTHONPATH": str(ROOT)}
    answers = []
    commands = (["sweep", "--seconds", "3"], ["ledger", "stats"],
                ["invoke", str(ROOT / "events" / "direct-notice.json")])
    for args in commands:
        proc = subprocess.run([sys.executable, "-m", "handler", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        answers.append({"statusCode": proc.returncode, "body": proc.stdout + proc.stderr})
    return answers


SCENARIOS: list[Callable[[Emulator, pytest.MonkeyPatch, Path], list[dict[str, Any]]]] = [
    api_refuses_the_signature, api_faults_of_every_kind, api_unreachable, store_down,
    store_refuses_the_password, store_dies_mid_flush, hostile_and_unauthorized_requests, misconfigured,
    command_line_failures,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_no_secret_reaches_a_log_line_an_answer_or_an_error_whatever_fails(
    deployed: Emulator, scenario: Callable[[Emulator, pytest.MonkeyPatch, Path], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    answers = scenario(deployed, monkeypatch, tmp_path)
    out, err = capfd.readouterr()
    # It did fail, and said so somewhere: a test that saw nothing would prove nothing.
    assert any(a["statusCode"] != 200 for a in answers) or '"level":"WARNING"' in out \
        or '"level":"ERROR"' in out, (answers, out[-2000:])
    everything = out + err + json.dumps(answers)
    assert leaks(everything) == [], [line for line in everything.splitlines() if leaks(line)][:5]
