"""`python -m handler hold JOB_ID --reason R` / `release JOB_ID`: the operator's word is final. A held
job's failure is never retried, whether its notice comes or the timer's sweep finds it; `ledger
show` says it is held, and why; once released, its failures are decided as before. Both commands
check the ledger's identity as every acting command does, and refuse bad input in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.__main__ import main as handler_main
from handler.jobs import JobRef
from handler.ledger.setup import ledger_init

from ..pushes import failure_push

REASON = "bad input; fixing the data first"
WRONG_ID = "deadbeefdeadbeefdeadbeefdeadbeef"
CONTEXT = {"time_limit_in_ms": 30000}


def notice(emu: Emulator, job: str, copy: int) -> None:
    assert app.main_handler(failure_push(emu, job, msg_id=f"msg-{job}-{copy}"), CONTEXT)[
        "statusCode"] == 200


def sweep() -> None:
    app.main_handler({"Type": "Timer"}, CONTEXT)


def test_a_held_job_is_never_retried_and_ledger_show_says_so_with_the_reason(
        wired: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    job = wired.add_failed_job("bad-input", [Outcome.succeed()])
    other = wired.add_failed_job("flaky", [Outcome.succeed()])
    assert handler_main(["hold", job, "--reason", REASON]) == 0
    assert f"{job} in ap-guangzhou is held" in capsys.readouterr().out

    for copy in range(2):
        notice(wired, job, copy)
    sweep()
    assert wired.retry_counts()[job] == 0
    assert wired.retry_counts()[other] == 1  # the sweep ran, and retried what it may

    assert handler_main(["ledger", "show", job]) == 0
    shown = capsys.readouterr().out
    assert "held since" in shown and REASON in shown
    [row] = [line for line in shown.splitlines() if line.split()[2:3] == ["held"]]
    assert "hold" in row and REASON in row and "(seen 1 more time)" in row
    assert "held: the operator holds the job" in shown
    assert handler_main(["ledger", "list", "--outcome", "held"]) == 0
    assert job in capsys.readouterr().out


def test_once_released_its_next_failure_is_retried(wired: Emulator,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    job = wired.add_failed_job("wait", [Outcome.fail("exit 1", 1), Outcome.succeed()])
    assert handler_main(["hold", job, "--reason", "wait for the fix"]) == 0
    notice(wired, job, 0)
    assert handler_main(["release", job]) == 0
    out = capsys.readouterr().out
    assert f"{job} in ap-guangzhou is released" in out and "wait for the fix" in out
    sweep()
    assert wired.retry_counts()[job] == 0  # the failure that came while held is left alone...
    notice(wired, job, 1)  # ...until its notice comes again
    assert wired.retry_counts()[job] == 1
    wired.wait_job(job, 20, state="FAILED", runs=2)
    notice(wired, job, 2)  # a failure after the release is decided as any other
    assert wired.retry_counts()[job] == 2
    assert handler_main(["release", job]) == 0
    assert "was not held: nothing to release" in capsys.readouterr().out


def test_hold_on_a_ledger_other_than_the_ledger_id_names_refuses_and_holds_nothing(
        wired: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger_init(f"sqlite:///{function_env}")
    job = wired.add_failed_job("bad-input", [Outcome.succeed()])
    monkeypatch.setenv("AUTORETRY_LEDGER_ID", WRONG_ID)
    for argv in (["hold", job, "--reason", REASON], ["release", job], ["terminate", job]):
        assert handler_main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"AUTORETRY_LEDGER_ID={WRONG_ID}" in err, err
    monkeypatch.delenv("AUTORETRY_LEDGER_ID")
    app.reset_runtime()
    assert app.runtime().ledger.hold_on(JobRef("ap-guangzhou", job)) is None
    assert wired.count("TerminateJob") == 0


def run(argv: list[str]) -> int:
    """The exit status, whether the command returns it or argparse exits with it."""
    try:
        return handler_main(argv)
    except SystemExit as e:
        return int(e.code or 0)


@pytest.mark.parametrize(("argv", "says"), [
    (["hold", "job-abcd1234"], "the following arguments are required: --reason"),
    (["hold", "42", "--reason", "x"], "'42' is not a Batch job id"),
    (["hold", "job-abcd1234", "--reason", "  "], "--reason: expected 1 to 300 characters"),
    (["hold", "job-abcd1234", "--reason", "x" * 301], "--reason: expected 1 to 300 characters"),
    (["release", "job-abcd1234", "--region", "guangzhou"], "--region 'guangzhou'"),
    (["terminate", "job-ABCD1234"], "'job-ABCD1234' is not a Batch job id"),
])
def test_what_hold_release_and_terminate_cannot_take_is_refused_in_one_line_with_exit_2(
        function_env: Path, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and says in err
    assert err.startswith(f"python -m handler {argv[0]}: ") or "required" in says
    assert not function_env.exists()  # refused before the ledger was opened


@pytest.mark.parametrize("command", ["hold", "release", "terminate"])
def test_each_commands_help_states_the_exit_status(command: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done; 1 a runtime failure" in text and "2 a usage error" in text
