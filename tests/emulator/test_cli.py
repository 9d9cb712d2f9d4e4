"""`python -m emulator` as a person meets it: start-up lines that say what it holds and how to point
the function at it, one clear line (never a traceback) when it cannot start, and a quiet server when
a client drops its connection."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

ROOT = __file__.rsplit("/tests/", 1)[0]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def serving() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--failed-jobs", "2",
                             "--secret-id", "AKIDCLITEST", "--secret-key", "cli-secret"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    jobs_left = -1  # the start-up lines end with "Jobs (N):" and N job lines
    while jobs_left != 0:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        listed = re.match(r"Jobs \((\d+)\):", line)
        jobs_left = int(listed[1]) if listed else jobs_left - 1 if jobs_left > 0 else jobs_left
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_start_up_lines_name_the_jobs_the_secret_and_the_settings_that_reach_it(
        serving: tuple[subprocess.Popen[str], list[str]]) -> None:
    _, lines = serving
    text = "\n".join(lines)
    endpoint = re.search(r"AUTORETRY_BATCH_ENDPOINT=(\S+)", text)
    assert endpoint and "AUTORETRY_BATCH_PROTOCOL=http" in text and "AUTORETRY_REGION=ap-guangzhou" in text
    assert "TENCENTCLOUD_SECRET_ID=AKIDCLITEST TENCENTCLOUD_SECRET_KEY=cli-secret" in text
    jobs = re.findall(r"^  (job-[0-9a-z]{8})  FAILED\s+seeded-\d: run 1 fails \(CVM_SPOT_RECLAIMED.*"
                      r"run 2 succeeds", text, re.M)
    assert len(jobs) == 2
    # The printed secret and endpoint are the real ones: a signed call with them sees those jobs.
    http = HttpProfile(endpoint=endpoint[1], protocol="http", reqTimeout=5)
    client = CommonClient("batch", "2017-03-12", credential.Credential("AKIDCLITEST", "cli-secret"),
                          "ap-guangzhou", profile=ClientProfile(httpProfile=http))
    answer = client.call_json("DescribeJobs", {"JobIds": jobs})["Response"]
    assert sorted(j["JobId"] for j in answer["JobSet"]) == sorted(jobs)


def test_a_client_that_resets_its_connection_prints_no_traceback(
        serving: tuple[subprocess.Popen[str], list[str]]) -> None:
    proc, lines = serving
    endpoint = re.search(r"AUTORETRY_BATCH_ENDPOINT=(\S+):(\d+)", "\n".join(lines))
    assert endpoint
    for _ in range(3):
        conn = socket.create_connection((endpoint[1], int(endpoint[2])), timeout=5)
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"half")
        time.sleep(0.1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        conn.close()
    time.sleep(0.5)
    proc.terminate()
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in stderr and "ConnectionResetError" not in stderr


def test_a_port_in_use_is_one_line_and_a_non_zero_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_refusal(run("--port", str(port)))
    assert line == (f"python -m emulator: port {port} on 127.0.0.1 is in use; pick another with --port "
                    "(or --port 0 for any free one)")


@pytest.mark.parametrize("port", ["99999", "-1", "ninety"])
def test_an_invalid_port_is_one_line_and_a_non_zero_exit(port: str) -> None:
    line = one_line_refusal(run("--port", port))
    assert line == ("python -m emulator: --port must be a number from 0 to 65535 (0: any free port), "
                    f"not {port!r}")


def test_unknown_fault_kinds_are_one_line_and_a_non_zero_exit() -> None:
    line = one_line_refusal(run("--port", "0", "--fault-kinds", "gremlins"))
    assert "unknown fault kinds ['gremlins']" in line
