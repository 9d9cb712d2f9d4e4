"""The README's walk-through, run as written: its `sh` blocks are taken from the README itself, each
terminal in its own shell, in a fresh directory. Only the two port numbers are swapped for free
ones (`--port` and the URLs that name them), so the test fails as soon as the README drifts from
what the commands do."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.local import free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Walk-through: make a job fail and watch it retried"
EMULATOR_PORT, SERVE_PORT = "9100", "8080"


def walkthrough() -> dict[str, list[str]]:
    """The section's `sh` blocks by terminal (`# terminal N` on a block's first line)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    terminals: dict[str, list[str]] = {}
    for block in re.findall(r"```sh\n(.*?)```", text[start:end if end > 0 else None], re.S):
        first, _, rest = block.partition("\n")
        found = re.fullmatch(r"#\s*(terminal \d)\s*", first)
        assert found, f"every sh block of the walk-through names its terminal: {first!r}"
        terminals.setdefault(found[1], []).append(rest)
    return terminals


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, within_s: float = 30.0
                  ) -> None:
    end = time.time() + within_s
    while time.time() < end:
        assert process.poll() is None, log.read_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}")


@pytest.fixture
def shell_env() -> dict[str, str]:
    """A user's shell: the virtualenv's `python` first on PATH, none of our variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)  # the fresh directory is not the checkout
    return env


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for p in processes:  # each was started in its own session: end its whole group
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_the_readme_walkthrough_retries_the_failed_job_once(
        tmp_path: Path, shell_env: dict[str, str], started: list[subprocess.Popen[bytes]]) -> None:
    terminals = walkthrough()
    assert sorted(terminals) == ["terminal 1", "terminal 2", "terminal 3"], terminals
    emulator_port, serve_port = free_port(), free_port()

    def as_run(block: str) -> str:
        block = re.sub(rf"\b{EMULATOR_PORT}\b", str(emulator_port), block)
        return re.sub(rf"\b{SERVE_PORT}\b", str(serve_port), block)

    for name, port in (("terminal 1", emulator_port), ("terminal 2", serve_port)):
        log = tmp_path / f"{name.replace(' ', '-')}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(["bash", "-c", "\n".join(map(as_run, terminals[name]))],
                                       cwd=tmp_path, env=shell_env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        wait_for_port(port, process, log)

    script = "set -eu\n" + "\n".join(map(as_run, terminals["terminal 3"]))
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=shell_env, capture_output=True,
                         text=True, timeout=120)
    function_log = (tmp_path / "terminal-2.log").read_text()
    assert run.returncode == 0, run.stdout + run.stderr + function_log
    assert "Traceback" not in run.stderr + function_log

    # The job the emulator listed as FAILED is the one pushed and shown.
    emulator_says = (tmp_path / "terminal-1.log").read_text()
    [job] = re.findall(r"^\s+(job-[a-z0-9]{8})\s+FAILED\s", emulator_says, re.M)
    out = run.stdout
    answers = re.findall(rf"^{job} copy (\d)/3: HTTP (\d+) ", out, re.M)
    assert answers == [("1", "200"), ("2", "200"), ("3", "200")], out
    assert f"job {job} in ap-guangzhou" in out
    assert "retries spent: 1 on attempts" in out
    history = [line for line in out.splitlines() if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", line)]
    retried = [line for line in history if line.split()[2] == "retried"]
    assert len(retried) == 1 and "retry 1 of 3" in retried[0], out
    # curl's push was accepted and decided without a second retry
    assert '"accepted": 1' in out
    assert len(re.findall(r"^\S+ \S+\s+" + job + r"\s+retried\s", out, re.M)) == 1, out
