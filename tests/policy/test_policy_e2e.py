"""Policies end to end: a notice through the entry point, the real SDK against the emulator, jobs
whose runs fail with scripted reasons and exit codes."""

from __future__ import annotations

import time
from textwrap import dedent
from typing import Any

import pytest

from emulator import Outcome
from handler import app
from handler.ledger import Ledger

from ..pushes import failure_push

SPOT = "CVM_SPOT_RECLAIMED: the spot instance was reclaimed"


@pytest.fixture
def with_policy(wired: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Returns `use(policy_yaml)`: the function pointed at the emulator, running that policy."""

    def use(policy: str) -> Any:
        monkeypatch.setenv("AUTORETRY_POLICY", "version: 1\n" + dedent(policy).strip() + "\n")
        app.reset_runtime()
        return wired

    return use


def deliver(emu: Any, job_id: str) -> int:
    """Push the job's current failure notice to the function, as the topic subscription would."""
    event = failure_push(emu, job_id, msg_id=f"msg-{job_id}-{time.time()}")
    status: int = app.main_handler(event, {"time_limit_in_ms": 15000})["statusCode"]
    return status


def wait_failed_again(emu: Any, job_id: str, runs: int, timeout: float = 10) -> None:
    end = time.time() + timeout
    while not (emu.job(job_id)["state"] == "FAILED" and emu.job(job_id)["runs"] >= runs):
        assert time.time() < end, f"{job_id} never failed for run {runs}: {emu.job(job_id)}"
        time.sleep(0.02)


def ledger() -> Ledger:
    return app.runtime().ledger


def test_exit_code_rules_skip_oom_and_usage_errors_and_retry_the_rest(with_policy: Any) -> None:
    emu = with_policy("""
        default: {action: RETRY}
        rules:
          - {name: oom, when: {exit_code: 137}, action: SKIP, reason: out of memory}
          - {name: usage, when: {exit_code: ['1-2']}, action: SKIP, reason: usage error}
    """)
    oom = emu.add_failed_job("oom", [Outcome.succeed()], reason="killed", exit_code=137)
    usage = emu.add_failed_job("usage", [Outcome.succeed()], reason="bad flag", exit_code=2)
    flaky = emu.add_failed_job("flaky", [Outcome.succeed()], reason="connection reset", exit_code=143)
    for job in (oom, usage, flaky):
        assert deliver(emu, job) == 200
    assert emu.retry_counts() == {oom: 0, usage: 0, flaky: 1}
    assert emu.count("DescribeTask") >= 3  # the exit codes came from DescribeTask
    decided = {d["job_id"]: d["decisions"][-1] for d in ledger().jobs()}
    assert (decided[oom]["rule"], decided[oom]["reason"]) == ("oom", "out of memory")
    assert decided[usage]["rule"] == "usage"


def test_spot_reclaims_are_retried_without_spending_the_job_budget(with_policy: Any) -> None:
    emu = with_policy("""
        limits: {max_attempts: 1}
        rules:
          - {name: spot, when: {instance_reason_regex: '(?i)spot|reclaim'}, action: RETRY_UNCOUNTED,
             counter: spot}
    """)
    spot = Outcome.fail(SPOT, exit_code=None)
    job = emu.add_failed_job("render", [spot, spot, Outcome.succeed()], reason=SPOT)
    for run in (1, 2, 3):
        wait_failed_again(emu, job, run)
        assert deliver(emu, job) == 200
    emu.wait_idle(10)
    assert emu.job(job)["state"] == "SUCCEED"
    assert emu.retry_counts()[job] == 3  # three spot losses, although max_attempts is 1
    [record] = [j for j in ledger().jobs() if j["job_id"] == job]
    assert record["counters"] == {"spot": 3}


def test_a_job_tagged_disabled_is_left_alone(with_policy: Any) -> None:
    emu = with_policy("default: {action: RETRY}")
    job = emu.add_failed_job("mine", [Outcome.succeed()], tags={"autoretry:disabled": "true"})
    other = emu.add_failed_job("theirs", [Outcome.succeed()])
    assert deliver(emu, job) == 200 and deliver(emu, other) == 200
    assert emu.retry_counts() == {job: 0, other: 1}
    [record] = [j for j in ledger().jobs() if j["job_id"] == job]
    assert record["decisions"][-1]["reason"].startswith("disabled_by_tag: tag autoretry:disabled")


def test_a_policy_on_names_and_tags_reads_no_job_details(with_policy: Any) -> None:
    emu = with_policy("""
        rules:
          - {name: nightly, when: {job_name: 'nightly-*', tags: {team: data}}, action: RETRY}
    """)
    yes = emu.add_failed_job("nightly-1", [Outcome.succeed()], tags={"team": "data"})
    no = emu.add_failed_job("adhoc", [Outcome.succeed()], tags={"team": "data"})
    assert deliver(emu, yes) == 200 and deliver(emu, no) == 200
    assert emu.retry_counts() == {yes: 1, no: 0}
    assert emu.count("DescribeJob") == 0 and emu.count("DescribeTask") == 0


def test_the_builtin_policy_leaves_a_job_tagged_disabled_alone(wired: Any) -> None:
    mine = wired.add_failed_job("mine", [Outcome.succeed()], tags={"autoretry:disabled": "TRUE"})
    capped = wired.add_failed_job("capped", [Outcome.succeed()], tags={"autoretry:max-attempts": "0"})
    other = wired.add_failed_job("theirs", [Outcome.succeed()])
    for job in (mine, capped, other):
        assert deliver(wired, job) == 200
    assert wired.retry_counts() == {mine: 0, capped: 0, other: 1}
    decided = {d["job_id"]: d["decisions"][-1] for d in ledger().jobs()}
    assert decided[mine]["reason"] == "disabled_by_tag: tag autoretry:disabled='TRUE'"
    assert decided[capped]["reason"].startswith("max_attempts: the job's cap of 0 retries is spent")


def test_a_notice_asking_for_a_hundred_retries_gets_the_cap_of_three(wired: Any) -> None:
    bug = Outcome.fail("exit 1", exit_code=1)
    job = wired.add_failed_job("bug", [bug] * 6, reason="exit 1", exit_code=1,
                               event_vars={"autoretry:max-attempts": "100"})
    for run in range(1, 5):
        wait_failed_again(wired, job, run)
        assert deliver(wired, job) == 200
    assert deliver(wired, job) == 200  # and once more for luck
    assert wired.retry_counts()[job] == 3
    [record] = [j for j in ledger().jobs() if j["job_id"] == job]
    assert record["decisions"][-1]["reason"] == "max_attempts: the job's cap of 3 retries is spent"


def test_a_notice_naming_a_rule_cannot_turn_an_out_of_memory_skip_into_a_retry(with_policy: Any) -> None:
    emu = with_policy("""
        rules:
          - {name: oom, when: {exit_code: 137}, action: SKIP, reason: out of memory}
          - {name: everything-else, when: {job_name: 'etl-*'}, action: RETRY}
    """)
    job = emu.add_failed_job("render", [Outcome.succeed()], reason="killed", exit_code=137,
                             event_vars={"autoretry:policy-rule": "everything-else"})
    assert deliver(emu, job) == 200
    assert emu.retry_counts()[job] == 0
    [record] = [j for j in ledger().jobs() if j["job_id"] == job]
    assert (record["decisions"][-1]["rule"], record["decisions"][-1]["reason"]) == (
        "oom", "out of memory; ignored event var autoretry:policy-rule='everything-else': a notice "
               "cannot choose a rule; set it as a job tag")
