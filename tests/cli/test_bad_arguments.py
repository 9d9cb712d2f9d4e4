"""What a command cannot take is refused in one line, never accepted silently; and one exit status
for every command: 2 for a usage error (an argument or a value it cannot take), 1 for a runtime
failure (the ledger, the Batch API, a port in use, a setting that cannot be used)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.__main__ import main as emulator_main
from handler import app
from handler.__main__ import USAGE
from handler.__main__ import main as handler_main
from handler.commands import UsageError, one_line
from handler.commands import serve as serve_command
from handler.policy.engine import RulesPolicy

ROOT = Path(__file__).resolve().parents[2]
ONE_LINE_YAML_POLICY = ("{version: 1, rules: [{name: oom, when: {exit_code: 137}, action: SKIP, "
                        "reason: out of memory}]}")


def the_one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def offline(function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local environment that reaches nothing: no credentials, no queue."""
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "AUTORETRY_QUEUE",
                 "AUTORETRY_QUEUE_ENDPOINT", "AUTORETRY_REGION", "AUTORETRY_LEDGER_ID"):
        monkeypatch.delenv(name, raising=False)
    return function_env


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize(("argv", "phrase"), [
    (["wire", "--region", "guangzhou", "--dry-run"],
     "--region 'guangzhou': expected a region such as ap-guangzhou"),
    (["wire", "--queue", "q1", "--http", "http://198.51.100.7/events", "--dry-run"],
     "--queue with --http: an HTTP subscription has no queue"),
    (["wire", "--max-receives", "3", "--http", "http://198.51.100.7/events", "--dry-run"],
     "--max-receives with --http"),
    (["pull", "--wait", "99"], "--wait 99: expected 0 to 30 seconds"),
    (["pull", "--seconds", "0"], "--seconds 0: expected a number of seconds above 0"),
    (["pull", "--queue", "9lives"], "--queue '9lives'"),
    (["sweep", "--seconds", "-1"], "--seconds -1: expected a number of seconds above 0"),
    (["sweep", "--seconds", "nan"], "--seconds nan"),
    (["ledger", "show", "42"], "'42' is not a Batch job id: expected job- and 8 lowercase letters"),
    (["ledger", "list", "--job", "job-42"], "'job-42' is not a Batch job id"),
    (["ledger", "show", "job-3k9x2m1a", "--region", "guangzhou"], "--region 'guangzhou'"),
    (["verify", "http://127.0.0.1:9/events", "--timeout", "-5"], "--timeout -5"),
])
def test_a_value_the_command_cannot_take_is_one_line_and_exit_2(
        offline: Path, argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert handler_main(argv) == 2
    captured = capsys.readouterr()
    line = the_one_line(captured.err)
    assert line.startswith(f"python -m handler {argv[0]}: ") and phrase in line, line
    assert "would call" not in captured.out  # wire made no plan
    assert not offline.exists()  # no ledger was opened


def test_demo_with_negative_duplicates_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # A subprocess: the demo rewrites its process's environment once it starts.
    done = subprocess.run([sys.executable, "-m", "handler", "demo", "--duplicates", "-1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "--duplicates -1: expected 0 or more" in the_one_line(done.stderr)
    assert not (tmp_path / "var").exists()  # nothing was started or written


def test_a_usage_error_exits_2_and_any_other_known_error_1(capsys: pytest.CaptureFixture[str]) -> None:
    @one_line("python -m handler thing")
    def usage(argv: list[str]) -> int:
        raise UsageError("--x 3: expected 1 or 2")

    assert usage([]) == 2
    assert the_one_line(capsys.readouterr().err) == "python -m handler thing: --x 3: expected 1 or 2"


def test_a_ledger_that_cannot_be_reached_is_a_runtime_failure_exit_1(
        offline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AUTORETRY_STORE", f"redis://127.0.0.1:{closed}/0")
    assert handler_main(["ledger", "stats"]) == 1
    assert "ledger unavailable" in the_one_line(capsys.readouterr().err)


def test_a_setting_that_cannot_be_used_is_a_runtime_failure_exit_1(
        offline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTORETRY_REGION", "Mars Base")
    assert handler_main(["sweep", "--seconds", "5"]) == 1
    assert "AUTORETRY_REGION='Mars Base'" in the_one_line(capsys.readouterr().err)


def test_a_busy_port_is_a_runtime_failure_exit_1_for_serve_and_the_emulator(
        offline: Path, taken_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_command.main(["--port", str(taken_port)]) == 1
    assert "address already in use" in the_one_line(capsys.readouterr().err)
    assert emulator_main(["--port", str(taken_port)]) == 1
    assert "is in use" in the_one_line(capsys.readouterr().err)


def test_an_emulator_argument_it_cannot_take_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert emulator_main(["--port", "0", "--speedup", "0"]) == 2
    assert "--speedup must be above 0" in the_one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", [["serve"], ["invoke"], ["sweep"], ["pull"], ["wire"],
                                     ["push"], ["verify"], ["demo"], ["policy"], ["ledger"],
                                     ["ledger", "stats"], ["ledger", "init"]], ids=" ".join)
def test_every_commands_help_states_the_exit_status(command: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = handler_main([*command, "--help"])  # `policy` returns argparse's status
    except SystemExit as e:
        status = int(e.code or 0)
    assert status == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done; 1 a runtime failure" in text and "2 a usage error" in text


def test_the_command_list_and_the_emulator_state_the_exit_status(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert "1 a runtime failure" in USAGE and "2 a usage error" in USAGE
    with pytest.raises(SystemExit):
        emulator_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "1 a runtime failure (a port in use" in text and "2 a usage error" in text


def test_a_one_line_yaml_policy_in_autoretry_policy_is_read_as_yaml(
        offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORETRY_POLICY", ONE_LINE_YAML_POLICY)
    app.reset_runtime()
    policy = app.runtime().policy
    assert isinstance(policy, RulesPolicy)
    assert [(r.name, r.action) for r in policy.spec.rules] == [("oom", "SKIP")]


def test_policy_check_reads_a_one_line_yaml_policy(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(ONE_LINE_YAML_POLICY))
    assert handler_main(["policy", "check", "-"]) == 0
    assert capsys.readouterr().out.startswith("OK: inline policy")


def test_an_inline_policy_neither_yaml_nor_json_is_one_yaml_line(
        offline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTORETRY_POLICY", "{version: 1, rules: [")
    assert handler_main(["sweep"]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert "AUTORETRY_POLICY" in line and "inline policy: not valid YAML: line 1" in line
