"""Where Tencent documents nothing, the emulator plays each plausible answer, chosen by a switch;
the defaults are its original guesses. Every answer goes through the real SDK, signed."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.batch.v20170312 import models

from emulator import Behaviour, Emulator, Outcome

from .sdk import REGION, SECRET_ID, SECRET_KEY, call, error_code


def emulator(**switches: Any) -> Emulator:
    # No rate limits: these tests pin answers, not pacing (test_emulator.py pins the limits).
    return Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=20.0, run_s=1.0, limits={}, **switches)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator() as e:
        yield e


def task(emu: Emulator, job: str, **page: Any) -> dict[str, Any]:
    return call(emu, "DescribeTask", {"JobId": job, "TaskName": "main", **page})


# --- a. RetryJobs with several ids, some not FAILED ----------------------------------------------
def test_refuse_all_is_the_default_and_retries_none_of_a_mixed_call(emu: Emulator) -> None:
    failed = emu.add_failed_job("f", [Outcome.succeed()])
    running = emu.add_job("r", [Outcome.succeed()])
    assert error_code(emu, "RetryJobs", {"JobIds": [failed, running]}) == "UnsupportedOperation"
    assert emu.retry_counts()[failed] == 0 and emu.job(failed)["state"] == "FAILED"


def test_apply_some_then_refuse_retries_the_failed_ids_yet_answers_unsupported_operation() -> None:
    with emulator(retry_refusal="apply-some-then-refuse") as emu:
        first = emu.add_failed_job("f1", [Outcome.succeed()])
        running = emu.add_job("r", [Outcome.succeed()])
        second = emu.add_failed_job("f2", [Outcome.succeed()])
        assert error_code(emu, "RetryJobs", {"JobIds": [first, running, second]}) == "UnsupportedOperation"
        counts = emu.retry_counts()
        assert (counts[first], counts[second], counts[running]) == (1, 1, 0)
        assert emu.job(first)["state"] == "RUNNING" and emu.job(second)["state"] == "RUNNING"


def test_retry_refusal_can_be_switched_on_a_running_emulator(emu: Emulator) -> None:
    failed = emu.add_failed_job("f", [Outcome.succeed()])
    running = emu.add_job("r", [Outcome.succeed()])
    emu.behaviour.retry_refusal = "apply-some-then-refuse"
    assert error_code(emu, "RetryJobs", {"JobIds": [running, failed]}) == "UnsupportedOperation"
    assert emu.retry_counts()[failed] == 1


def test_unknown_switch_values_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="refuse-all, apply-some-then-refuse"):
        Behaviour(retry_refusal="some")
    with pytest.raises(ValueError, match="listing_order"):
        Behaviour(listing_order="random")


# --- b. a re-failure's EndTime --------------------------------------------------------------------
def test_a_refailure_gets_a_later_end_time_by_default(emu: Emulator) -> None:
    bug = Outcome.fail("exit 1", 1)
    job = emu.add_failed_job("bug", [bug])
    before = call(emu, "DescribeJobs", {"JobIds": [job]})["JobSet"][0]["EndTime"]
    call(emu, "RetryJobs", {"JobIds": [job]})
    after = emu.wait_job(job, 5, state="FAILED", runs=2)
    assert after["end_time"] > before


def test_keep_end_time_reports_the_earlier_failures_end_time_after_a_retry() -> None:
    with emulator(refailure_end_time="keep-end-time") as emu:
        bug = Outcome.fail("exit 1", 1)
        job = emu.add_failed_job("bug", [bug])
        before = call(emu, "DescribeJobs", {"JobIds": [job]})["JobSet"][0]["EndTime"]
        time.sleep(1.1)  # EndTime has 1 s resolution: a new one would differ by now
        call(emu, "RetryJobs", {"JobIds": [job]})
        emu.wait_job(job, 5, state="FAILED", runs=2)
        view = call(emu, "DescribeJobs", {"JobIds": [job]})["JobSet"][0]
        assert (view["JobState"], view["EndTime"]) == ("FAILED", before)
        assert call(emu, "DescribeJob", {"JobId": job})["EndTime"] == before


# --- c. StateDetailedReason, with the SDK's own field names ---------------------------------------
def test_task_instance_carries_state_detailed_reason_beside_state_reason(emu: Emulator) -> None:
    job = emu.add_failed_job("oom", reason="OOMKilled", exit_code=137,
                             detail="container main exceeded its memory limit of 4 GiB")
    [instance] = task(emu, job)["TaskInstanceSet"]
    assert instance["StateReason"] == "OOMKilled"
    assert instance["StateDetailedReason"] == "container main exceeded its memory limit of 4 GiB"
    assert call(emu, "DescribeJob", {"JobId": job})["StateReason"] == "OOMKilled"


def test_every_answer_uses_only_field_names_the_sdk_models_know(emu: Emulator) -> None:
    job = emu.add_failed_job("a", detail="why", tags={"team": "render"})
    answers: list[tuple[Any, dict[str, Any]]] = []
    answers += [(models.JobView(), v) for v in call(emu, "DescribeJobs", {"JobIds": [job]})["JobSet"]]
    detail = call(emu, "DescribeJob", {"JobId": job})
    answers += [(models.TaskView(), t) for t in detail["TaskSet"]]
    answers += [(models.TaskInstanceView(), i) for i in task(emu, job)["TaskInstanceSet"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for model, answer in answers:
            model._deserialize(answer)
    assert [str(w.message) for w in caught] == []
    [instance] = task(emu, job)["TaskInstanceSet"]
    parsed = models.TaskInstanceView()
    parsed._deserialize(instance)
    assert parsed.StateDetailedReason == "why"
    # The real DescribeJob has StateReason but no StateDetailedReason (SDK 3.1.171).
    assert "StateDetailedReason" not in detail


# --- d. DescribeTask pages its instances ----------------------------------------------------------
def test_describe_task_pages_past_a_thousand_instances_and_the_failure_is_on_the_last_page(
        emu: Emulator) -> None:
    job = emu.add_failed_job("wide", reason="exit 3", exit_code=3, instances=2500)
    assert len(task(emu, job)["TaskInstanceSet"]) == 100  # the documented default Limit
    seen: list[dict[str, Any]] = []
    for offset in (0, 1000, 2000):
        page = task(emu, job, Offset=offset, Limit=1000)
        assert page["TaskInstanceTotalCount"] == 2500
        seen += page["TaskInstanceSet"]
    assert [i["TaskInstanceIndex"] for i in seen] == list(range(2500))
    failed = [i for i in seen if i["TaskInstanceState"] == "FAILED"]
    assert [(i["TaskInstanceIndex"], i["ExitCode"]) for i in failed] == [(2499, 3)]
    assert task(emu, job, Offset=3000, Limit=1000)["TaskInstanceSet"] == []


def test_describe_task_refuses_a_limit_above_a_thousand(emu: Emulator) -> None:
    job = emu.add_failed_job("wide", instances=1500)
    code = error_code(emu, "DescribeTask", {"JobId": job, "TaskName": "main", "Limit": 1001})
    assert code == "InvalidParameterValue.LimitExceeded"


def test_describe_task_filters_instances_by_state(emu: Emulator) -> None:
    job = emu.add_failed_job("wide", instances=1200)
    page = task(emu, job, Filters=[{"Name": "task-instance-state", "Values": ["FAILED"]}])
    assert page["TaskInstanceTotalCount"] == 1
    assert [i["TaskInstanceIndex"] for i in page["TaskInstanceSet"]] == [1199]


# --- e. ExitCode is always an integer -------------------------------------------------------------
def test_a_lost_node_reports_an_integer_exit_code_minus_one_by_default(emu: Emulator) -> None:
    spot = emu.add_failed_job("spot", reason="CVM_SPOT_RECLAIMED", exit_code=None)
    [instance] = task(emu, spot)["TaskInstanceSet"]
    assert instance["ExitCode"] == -1 and isinstance(instance["ExitCode"], int)


def test_lost_exit_code_switch_plays_another_integer() -> None:
    with emulator(lost_exit_code=137) as emu:
        spot = emu.add_failed_job("spot", reason="CVM_SPOT_RECLAIMED", exit_code=None)
        assert task(emu, spot)["TaskInstanceSet"][0]["ExitCode"] == 137


def test_running_and_succeeded_instances_report_exit_code_zero(emu: Emulator) -> None:
    job = emu.add_job("slow", [Outcome.succeed()])
    assert task(emu, job)["TaskInstanceSet"][0]["ExitCode"] == 0
    emu.wait_job(job, 5, state="SUCCEED", runs=1)
    assert task(emu, job)["TaskInstanceSet"][0]["ExitCode"] == 0


# --- f. the order of DescribeJobs' listing --------------------------------------------------------
def listing(emu: Emulator, state: str = "FAILED") -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        page = call(emu, "DescribeJobs", {"Filters": [{"Name": "job-state", "Values": [state]}],
                                          "Offset": offset, "Limit": 100})
        ids += [j["JobId"] for j in page["JobSet"]]
        offset += 100
        if offset >= page["TotalCount"]:
            return ids


@pytest.mark.parametrize("order", ["newest-first", "oldest-first"])
def test_listing_follows_the_chosen_age_order(order: str) -> None:
    with emulator(listing_order=order) as emu:
        created = emu.add_failed_jobs(250, "old")  # oldest first
        expected = created if order == "oldest-first" else created[::-1]
        assert listing(emu) == expected


def test_unordered_listing_is_a_stable_shuffle_that_lists_each_job_once() -> None:
    with emulator(listing_order="unordered", seed=7) as emu:
        created = emu.add_failed_jobs(250, "old")
        first, second = listing(emu), listing(emu)
        assert first == second
        assert sorted(first) == sorted(created) and len(set(first)) == 250
        assert first not in (created, created[::-1])


def test_listing_order_can_be_switched_on_a_running_emulator(emu: Emulator) -> None:
    created = emu.add_failed_jobs(30, "old")
    assert listing(emu) == created[::-1]
    emu.behaviour.listing_order = "oldest-first"
    assert listing(emu) == created


def test_a_retried_job_leaves_the_failed_listing_and_returns_when_it_fails_again(emu: Emulator) -> None:
    created = emu.add_failed_jobs(5, "old")
    call(emu, "RetryJobs", {"JobIds": [created[2]]})
    assert created[2] not in listing(emu) and listing(emu, "RUNNING") == [created[2]]
    emu.wait_job(created[2], 5, state="FAILED", runs=2)
    assert sorted(listing(emu)) == sorted(created)


# --- g. what a job ended by TerminateJob says ----------------------------------------------------
@pytest.mark.parametrize(("answer", "reason", "exit_code"), [
    ("marked", "terminated by user", -1), ("unmarked", "task failed", 1)])
def test_terminate_job_ends_a_running_job_failed_saying_so_or_not_as_switched(
        answer: str, reason: str, exit_code: int) -> None:
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=20.0, run_s=600.0, limits={},
                  terminate_reason=answer) as emu:
        job = emu.add_job("runaway", [Outcome.succeed()])
        ordinary = emu.add_failed_job("bug", reason="task failed", exit_code=1)
        call(emu, "TerminateJob", {"JobId": job})
        assert emu.job(job)["state"] == "FAILED"
        assert call(emu, "DescribeJob", {"JobId": job})["StateReason"] == reason
        [instance] = task(emu, job)["TaskInstanceSet"]
        assert (instance["StateReason"], instance["ExitCode"]) == (reason, exit_code)
        if answer == "unmarked":  # nothing tells it from an ordinary task failure
            [other] = task(emu, ordinary)["TaskInstanceSet"]
            assert {k: v for k, v in instance.items() if k.endswith(("Reason", "Code", "State"))} \
                == {k: v for k, v in other.items() if k.endswith(("Reason", "Code", "State"))}


def test_marked_is_the_default_terminate_reason_and_others_are_refused() -> None:
    assert Behaviour().terminate_reason == "marked"
    with pytest.raises(ValueError, match="terminate_reason is one of marked, unmarked"):
        Behaviour(terminate_reason="silent")
