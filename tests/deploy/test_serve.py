"""`python -m handler serve` as a user runs it, in its own process: what it says at start, what it
refuses to start with, and what a hostile client cannot do to it (issue 12; issue 14, hole 9)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.local import free_port as closed_port  # a loopback port nobody listens on

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-serve-7a1e93c0"


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_", "AWS_LAMBDA"))}
    env.update({"PYTHONPATH": str(ROOT), "AUTORETRY_STORE": f"sqlite:///{tmp_path / 'ledger.db'}",
                "PYTHONUNBUFFERED": "1", **extra})
    return env


class Served:
    def __init__(self, proc: subprocess.Popen[str], banner: str) -> None:
        self.proc, self.banner = proc, banner
        match = re.search(r"http://[^:/\s]+:(\d+)/events", banner)
        assert match, banner
        self.port = int(match.group(1))

    def raw(self, request: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes as they are; the answer's bytes until the server closes or stops sending."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(request)
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
                    if b"\r\n\r\n" in b"".join(chunks):
                        break
            except TimeoutError:
                pass
            return b"".join(chunks)


def start(tmp_path: Path, *args: str, **env: str) -> Served:
    proc = subprocess.Popen([sys.executable, "-m", "handler", "serve", "--port", "0", *args],
                            env=serve_env(tmp_path, **env), cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    if not banner:
        proc.wait(10)
        raise AssertionError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")
    return Served(proc, banner)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start(tmp_path, AUTORETRY_AUTH_TOKEN=TOKEN)
    yield s
    s.proc.terminate()
    _, err = s.proc.communicate(timeout=10)
    assert "Traceback" not in err, err


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert match, answer[:200]
    return int(match.group(1))


def test_serve_says_its_url_with_the_events_path_its_store_and_its_auth_mode(
    served: Served, tmp_path: Path
) -> None:
    assert f"http://127.0.0.1:{served.port}/events" in served.banner
    assert f"sqlite:///{tmp_path / 'ledger.db'}" in served.banner
    assert "token" in served.banner
    assert TOKEN not in served.banner


@pytest.mark.parametrize("length", [b"-1", b"-5000", b"abc", b"1e3", b" ", b"12 34"])
def test_a_negative_or_non_numeric_content_length_is_400_and_blocks_nothing(
    served: Served, length: bytes
) -> None:
    started = time.monotonic()
    answer = served.raw(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
    assert status_of(answer) == 400
    assert time.monotonic() - started < 4
    # and the server still answers the next caller
    assert status_of(served.raw(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")) in (200, 401)


def test_a_body_announced_over_the_limit_is_413_before_any_of_it_is_read(served: Served) -> None:
    started = time.monotonic()
    # Announce 2 MiB and send none of it: a server that reads first would wait for the body.
    answer = served.raw(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n", timeout=8)
    assert status_of(answer) == 413
    assert time.monotonic() - started < 4


def test_a_chunked_body_is_refused_rather_than_read_as_the_next_request(served: Served) -> None:
    answer = served.raw(b"POST /events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n0\r\n\r\n")
    assert status_of(answer) == 411
    assert b"Connection: close" in answer


def test_on_every_interface_local_mode_is_not_assumed(tmp_path: Path) -> None:
    s = start(tmp_path, "--host", "0.0.0.0")
    try:
        body = b'{"Events": [{"EventName": "JOB_FAILED", "Batch": {"JobId": "job-5erve001"}}]}'
        answer = s.raw(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert status_of(answer) == 503
        assert b"endpoint not configured" in answer
        assert "AUTORETRY_AUTH_TOKEN" in s.banner  # the start line says what to set
    finally:
        s.proc.terminate()
        s.proc.communicate(timeout=10)


def test_on_loopback_local_mode_is_the_default(tmp_path: Path) -> None:
    s = start(tmp_path)
    try:
        assert "local" in s.banner
        body = b'{"Events": [{"EventName": "JOB_SUCCEED", "Batch": {"JobId": "job-5erve001"}}]}'
        answer = s.raw(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert status_of(answer) == 200
    finally:
        s.proc.terminate()
        s.proc.communicate(timeout=10)


def run_serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "handler", "serve", *args], env=serve_env(tmp_path, **env),
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)


def one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    out = (proc.stdout + proc.stderr).strip()
    assert "Traceback" not in out
    assert len(out.splitlines()) == 1, out
    return out


def test_a_port_in_use_is_one_clear_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_clear_line(run_serve(tmp_path, "--port", str(port)))
    assert str(port) in line and "in use" in line


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_clear_line_and_a_non_zero_exit(tmp_path: Path, port: str) -> None:
    line = one_clear_line(run_serve(tmp_path, "--port", port))
    assert "--port" in line and "65535" in line


@pytest.mark.parametrize(("policy", "phrase"), [
    ("version: 1\nrules: [{action: NOPE}]", "NOPE"),
    ("/nowhere/policy.yaml", "not found"),
])
def test_a_broken_policy_stops_serve_from_starting(tmp_path: Path, policy: str, phrase: str) -> None:
    line = one_clear_line(run_serve(tmp_path, "--port", str(closed_port()), AUTORETRY_POLICY=policy))
    assert phrase in line


def test_a_configuration_error_stops_serve_from_starting(tmp_path: Path) -> None:
    line = one_clear_line(run_serve(tmp_path, "--port", str(closed_port()), AUTORETRY_REGION="Mars Base"))
    assert "AUTORETRY_REGION" in line


def test_the_scf_deployment_secrets_file_is_never_committed() -> None:
    assert subprocess.run(["git", "check-ignore", "-q", "deploy/scf/.env"], cwd=ROOT).returncode == 0
