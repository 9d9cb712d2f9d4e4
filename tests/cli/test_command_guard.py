"""Every command that acts (sweep, pull, invoke, serve, demo) checks the ledger's identity as the
function does: with AUTORETRY_LEDGER_ID set, a ledger other than the one it names is refused in one
line, before anything is received, deleted or retried. `pull` of a real queue also refuses to run
without AUTORETRY_LEDGER_ID: the queue is the deployed function's, and its notices belong in the
function's ledger, not in whatever local one AUTORETRY_STORE names."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator import Emulator, Outcome
from handler.commands import invoke, pull, sweep
from handler.commands.pull import on_this_machine
from handler.ledger import open_store
from handler.ledger.setup import ledger_init

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
QUEUE = "autoretry-notices"
WRONG_ID = "deadbeefdeadbeefdeadbeefdeadbeef"


def the_one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def queue(wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator's topic delivering into a queue on loopback, as the function's queue would."""
    wired.cmq.create_queue(QUEUE)
    wired.cmq.subscribe_queue("batch-events", QUEUE)
    monkeypatch.setenv("AUTORETRY_QUEUE", QUEUE)
    monkeypatch.setenv("AUTORETRY_QUEUE_ENDPOINT", wired.url)
    return wired


def test_sweep_on_a_ledger_other_than_the_ledger_id_names_refuses_and_retries_nothing(
        wired: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    local = ledger_init(f"sqlite:///{function_env}")  # a local ledger, not the function's
    job = wired.add_failed_job("at-its-cap", [Outcome.succeed()])
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", WRONG_ID)
    assert sweep.main(["--seconds", "10"]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert f"is ledger {local}, not the one AUTORETRY_LEDGER_ID={WRONG_ID} names" in line
    assert "Set AUTORETRY_STORE to the function's store" in line
    assert "`python -m handler ledger init` prints it" in line
    assert wired.retry_counts()[job] == 0
    assert wired.count("DescribeJobs") == 0  # refused before any call


def test_sweep_on_a_ledger_that_forgot_refuses_and_names_the_adoption(
        wired: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    open_store(f"sqlite:///{function_env}").close()  # a ledger without its identity record
    job = wired.add_failed_job("at-its-cap", [Outcome.succeed()])
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", WRONG_ID)
    assert sweep.main(["--seconds", "10"]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert f"has no identity, not the one AUTORETRY_LEDGER_ID={WRONG_ID} names" in line
    assert "`python -m handler ledger init --adopt` accepts it as it is" in line
    assert wired.retry_counts()[job] == 0


def test_sweep_where_there_is_no_ledger_file_refuses_without_making_one(
        wired: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    job = wired.add_failed_job("at-its-cap", [Outcome.succeed()])
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", WRONG_ID)
    assert sweep.main(["--seconds", "10"]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert f"no ledger at sqlite:///{function_env}" in line
    assert f"AUTORETRY_LEDGER_ID={WRONG_ID}" in line and "AUTORETRY_STORE" in line
    assert not function_env.exists()
    assert wired.retry_counts()[job] == 0


def test_sweep_on_the_ledger_the_id_names_sweeps(wired: Emulator, function_env: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    job = wired.add_failed_job("lost-notice", [Outcome.succeed()])
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", ledger_init(f"sqlite:///{function_env}"))
    assert sweep.main(["--seconds", "20"]) == 0
    assert wired.retry_counts()[job] == 1


def test_pull_on_a_ledger_other_than_the_ledger_id_names_refuses_and_leaves_the_queue(
        queue: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger_init(f"sqlite:///{function_env}")
    jobs = [queue.add_failed_job(f"job{i}", [Outcome.succeed()]) for i in range(2)]
    for job in jobs:
        queue.publish(job)
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", WRONG_ID)
    assert pull.main(["--once", "--seconds", "10"]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert f"not the one AUTORETRY_LEDGER_ID={WRONG_ID} names" in line
    assert "python -m handler ledger init" in line
    assert queue.cmq.depth(QUEUE) == 2  # nothing received, nothing deleted
    assert [queue.retry_counts()[j] for j in jobs] == [0, 0]


def test_pull_on_the_ledger_the_id_names_pulls_and_retries(
        queue: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = queue.add_failed_job("job", [Outcome.succeed()])
    queue.publish(job)
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", ledger_init(f"sqlite:///{function_env}"))
    assert pull.main(["--once", "--seconds", "20"]) == 0
    assert queue.cmq.depth(QUEUE) == 0
    assert queue.retry_counts()[job] == 1


def test_pull_of_a_real_queue_without_ledger_id_refuses_before_the_ledger_is_opened(
        function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTORETRY_QUEUE", "batch-autoretry")
    for name in ("AUTORETRY_QUEUE_ENDPOINT", "AUTORETRY_LEDGER_ID", "TENCENTCLOUD_SECRET_ID",
                 "TENCENTCLOUD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert pull.main(["--once"]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert "the queue batch-autoretry at https://cmq-gz." in line
    assert "AUTORETRY_LEDGER_ID is not set" in line
    assert "Set AUTORETRY_STORE to the function's store and AUTORETRY_LEDGER_ID" in line
    assert not function_env.exists()  # not even an empty local ledger was made


def test_pull_of_a_real_queue_with_the_functions_ledger_id_goes_ahead(
        function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTORETRY_QUEUE", "batch-autoretry")
    monkeypatch.delenv("AUTORETRY_QUEUE_ENDPOINT", raising=False)
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)  # the receive then fails here, before any network
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", ledger_init(f"sqlite:///{function_env}"))
    assert pull.main(["--once"]) == 1
    assert "pulling batch-autoretry at https://cmq-gz." in capsys.readouterr().err


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:9100", True), ("http://localhost:9100", True), ("http://[::1]:9100", True),
    ("http://127.8.0.1", True), ("https://cmq-gz.public.tencenttdmq.com", False),
    ("http://gz.mqadapter.cmq.tencentyun.com", False), ("http://10.0.0.12:80", False),
])
def test_only_a_loopback_queue_counts_as_this_machines(url: str, local: bool) -> None:
    assert on_this_machine(url) is local


def test_invoke_on_a_ledger_other_than_the_ledger_id_names_refuses_in_one_line(
        wired: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger_init(f"sqlite:///{function_env}")
    job = wired.add_failed_job("at-its-cap", [Outcome.succeed()])
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", WRONG_ID)
    assert invoke.main([str(EVENTS / "scf-timer.json")]) == 1
    line = the_one_line(capsys.readouterr().err)
    assert f"not the one AUTORETRY_LEDGER_ID={WRONG_ID} names" in line
    assert "python -m handler ledger init" in line
    assert wired.retry_counts()[job] == 0


def _clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))}
    return clean | {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **env}


def test_serve_on_a_ledger_other_than_the_ledger_id_names_does_not_start(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger_init(store)
    done = subprocess.run([sys.executable, "-m", "handler", "serve", "--port", "0"], cwd=tmp_path,
                          env=_clean_env(tmp_path, AUTORETRY_STORE=store, AUTORETRY_LEDGER_ID=WRONG_ID),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "serving" not in done.stdout
    line = the_one_line(done.stderr)
    assert f"not the one AUTORETRY_LEDGER_ID={WRONG_ID} names" in line
    assert "python -m handler ledger init" in line


def test_demo_runs_on_its_own_fresh_ledger_whatever_the_callers_ledger_settings(tmp_path: Path
                                                                               ) -> None:
    theirs = tmp_path / "theirs.db"
    done = subprocess.run([sys.executable, "-m", "handler", "demo", "--duplicates", "0",
                           "--seconds", "60"], cwd=tmp_path,
                          env=_clean_env(tmp_path, AUTORETRY_STORE=f"sqlite:///{theirs}",
                                         AUTORETRY_LEDGER_ID=WRONG_ID),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # Its endpoint accepted the pushes: the function's check passed on the demo's own ledger.
    [delivered] = re.findall(r"^(\d+) notices delivered", done.stdout, re.M)
    assert int(delivered) > 0, done.stdout
    assert "AUTORETRY_LEDGER_ID=" in done.stdout and WRONG_ID not in done.stdout
    assert not theirs.exists()


def test_every_command_builds_the_functions_parts_through_the_guard() -> None:
    # A command that imported handler.app.runtime (or build_runtime) could act without the
    # ledger check; acting_runtime is the only way in, so a new command cannot forget it.
    commands = ROOT / "handler" / "commands"
    offenders = []
    for module in sorted(commands.glob("*.py")):
        if module.name == "__init__.py":  # where acting_runtime itself lives
            continue
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "handler.app":
                offenders += [f"{module.name}: {a.name}" for a in node.names
                              if a.name in ("runtime", "build_runtime")]
    assert offenders == []
