"""`python -m handler terminate JOB_ID`: the job is held, then stopped with TerminateJob through the
real SDK, and never retried, whether its failure's notice comes or the timer's sweep finds it.
Tencent does not document what a terminated job's StateReason says, so the emulator plays both
answers: it says so (`marked`), or it reads like any task failure (`unmarked`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.__main__ import main as handler_main
from handler.jobs import JobRef

from ..conftest import SECRET_ID, SECRET_KEY
from ..pushes import failure_push

CONTEXT = {"time_limit_in_ms": 30000}
# A policy that reads every failure's details (its first rule looks at exit codes), and retries
# whatever it does not skip.
READS_DETAILS = ("version: 1\ndefault: {action: RETRY}\n"
                 "rules: [{name: oom, when: {exit_code: 137}, action: SKIP}]\n")


@pytest.fixture(params=["marked", "unmarked"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    # Runs last 30 s (600 s / 20): a job is RUNNING when it is terminated.
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0, run_s=600.0,
                  terminate_reason=request.param) as e:
        yield e


def deliver(emu: Emulator, job: str, copy: int) -> None:
    answer = app.main_handler(failure_push(emu, job, msg_id=f"msg-{job}-{copy}"), CONTEXT)
    assert answer["statusCode"] == 200


def test_a_terminated_job_ends_failed_and_is_never_retried_by_a_notice_or_a_sweep(
        wired: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    job = wired.add_job("runaway", [Outcome.succeed()])
    assert handler_main(["terminate", job, "--reason", "runaway cost"]) == 0
    assert "TerminateJob was accepted" in capsys.readouterr().out
    ended = wired.wait_job(job, 10, state="FAILED")
    marked = wired.behaviour.terminate_reason == "marked"
    assert ended["reason"] == ("terminated by user" if marked else "task failed")

    for copy in range(3):  # its notice, and the topic's copies
        deliver(wired, job, copy)
    app.main_handler({"Type": "Timer"}, CONTEXT)  # the sweep finds the FAILED job too
    assert wired.retry_counts()[job] == 0
    assert wired.count("TerminateJob", None) == 1
    # The call took a turn of the limit every instance shares.
    assert app.runtime().ledger.store.get(["t/TerminateJob"])

    assert handler_main(["ledger", "show", job]) == 0
    shown = capsys.readouterr().out
    assert "(`terminate`): runaway cost" in shown
    assert any(line.split()[2:4] == ["held", "hold"] and "runaway cost" in line
               for line in shown.splitlines())


def test_when_terminate_job_fails_the_hold_stays_and_the_command_says_so(
        wired: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    gone = "job-0000gone"  # a job the service does not know
    assert handler_main(["terminate", gone]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{gone} in ap-guangzhou is held (terminated by the operator)" in line
    assert "TerminateJob failed (ResourceNotFound.Job" in line
    assert f"python -m handler terminate {gone}` again" in line
    hold = app.runtime().ledger.hold_on(JobRef("ap-guangzhou", gone))
    assert hold is not None and hold.command == "terminate"


def terminated_from_elsewhere(emu: Emulator, notice: bool) -> tuple[int, dict[str, str]]:
    """TerminateJob from the console (no hold), then its notice (or none: lost) and a timer tick.
    The job's retries and its last decision."""
    job = emu.add_job("runaway", [Outcome.succeed()])
    emu.fleet.terminate(emu.fleet.jobs[job])
    if notice:
        deliver(emu, job, 0)
    app.main_handler({"Type": "Timer"}, CONTEXT)
    record = app.runtime().ledger.job(JobRef("ap-guangzhou", job))
    assert record is not None
    return emu.retry_counts()[job], record["decisions"][-1]


def test_a_termination_from_elsewhere_whose_notice_was_lost_is_recognised_by_its_details(
        wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sweep finds the failure; a policy that reads its details skips it when its StateReason
    # says it was terminated. When it reads like any failure, nothing can tell it from one, and
    # only `python -m handler terminate` (the hold) keeps it alone.
    monkeypatch.setenv("AUTORETRY_POLICY", READS_DETAILS)
    app.reset_runtime()
    retries, decision = terminated_from_elsewhere(wired, notice=False)
    if wired.behaviour.terminate_reason == "marked":
        assert retries == 0
        assert (decision["rule"], decision["outcome"]) == ("terminated", "skipped")
        assert decision["reason"] == "terminated_by_user: 'terminated by user' (TerminateJob)"
    else:
        assert retries == 1
        assert (decision["rule"], decision["outcome"]) == ("default", "retried")


def test_a_termination_from_elsewhere_is_skipped_by_the_built_in_policy_when_its_notice_says_so(
        wired: Emulator) -> None:
    # No policy file, so no details are read; the notice carries the failure's StateReason (the
    # emulator's does, Batch's may): a termination it names is skipped for nothing, and the sweep
    # finds the failure decided. When the notice reads like any failure, it is retried.
    retries, decision = terminated_from_elsewhere(wired, notice=True)
    if wired.behaviour.terminate_reason == "marked":
        assert retries == 0
        assert (decision["rule"], decision["outcome"]) == ("terminated", "skipped")
        assert "as its notice said" in decision["reason"]
    else:
        assert retries == 1
        assert (decision["rule"], decision["outcome"]) == ("default", "retried")
