"""The README's walk-through, run as written: its `sh` blocks are taken from the README itself, each
terminal in its own shell, in a fresh directory. Only the two port numbers are swapped for free
ones (`--port` and the URLs that name them), so the test fails as soon as the README drifts from
what the commands do."""

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

from bench.local import end_group, free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Walk-through: make a job fail and watch it retried"
EMULATOR_PORT, SERVE_PORT = "9100", "8080"


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end > 0 else None]


def walkthrough() -> dict[str, list[str]]:
    """The section's `sh` blocks by terminal (`# terminal N` on a block's first line)."""
    terminals: dict[str, list[str]] = {}
    for block in re.findall(r"```sh\n(.*?)```", section(), re.S):
        first, _, rest = block.partition("\n")
        found = re.fullmatch(r"#\s*(terminal \d)\s*", first)
        assert found, f"every sh block of the walk-through names its terminal: {first!r}"
        terminals.setdefault(found[1], []).append(rest)
    return terminals


HISTORY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)  (\S+)\s+(\S+)\s+(.*)$", re.M)


def documented_history() -> list[tuple[str, str, re.Pattern[str]]]:
    """The history the section shows (its `text` block), each line as its outcome, its rule and
    a pattern of its reason: times as any time, the state the job has left FAILED for as RUNNING
    or SUCCEED (the section says so), and what the line may add when notices repeat."""
    [shown] = re.findall(r"```text\n(.*?)```", section(), re.S)
    lines = []
    for _, outcome, rule, reason in HISTORY_LINE.findall(shown):
        pattern = re.escape(reason)
        pattern = re.sub(r"\d{4}\\-\d\d\\-\d\dT\d\d:\d\d:\d\dZ", r"\\S+", pattern)
        pattern = pattern.replace("RUNNING", "(RUNNING|SUCCEED)")
        lines.append((outcome, rule, re.compile(pattern + r"( \((\+\d+ duplicate|seen \d+ more).*\))*")))
    return lines


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
        end_group(p)


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
    # Every Batch API call, the commands' and the function's, kept within the limit.
    assert "RequestLimitExceeded" not in function_log

    # The job the emulator listed as FAILED is the one pushed and shown.
    emulator_says = (tmp_path / "terminal-1.log").read_text()
    [job] = re.findall(r"^\s+(job-[a-z0-9]{8})\s+FAILED\s", emulator_says, re.M)
    out = run.stdout
    answers = re.findall(rf"^{job} copy (\d)/3: HTTP (\d+) ", out, re.M)
    assert answers == [("1", "200"), ("2", "200"), ("3", "200")], out
    assert f"job {job} in ap-guangzhou" in out
    assert "retries spent: 1 on attempts" in out
    # `ledger show` prints the history the section documents, line by line: one retry, then the
    # copies that came after it kept as not_failed.
    shown = [(outcome, rule, reason) for _, outcome, rule, reason in HISTORY_LINE.findall(out)
             if outcome != job]
    documented = documented_history()
    assert [(o, r) for o, r, _ in shown] == [(o, r) for o, r, _ in documented] \
        == [("retried", "default"), ("not_failed", "verify")], out + function_log
    for (_, _, reason), (_, _, pattern) in zip(shown, documented, strict=True):
        assert pattern.fullmatch(reason), (reason, pattern.pattern)
    # curl's push was accepted, and decided as a repeat of not_failed: still one retry
    assert '"accepted": 1' in out
    listed = [(outcome, reason) for _, outcome, _, reason in
              re.findall(rf"^(\S+ \S+)\s+{job}\s+(\S+)\s+(\S+)\s+(.*)$", out, re.M)]
    assert [o for o, _ in listed] == ["not_failed", "retried"], out
    assert re.search(r"\(seen \d+ more times?\)$", listed[0][1]), out
