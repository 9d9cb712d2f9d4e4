"""What the function reads from the Batch API's answers: times, failure keys, exit codes and states."""

from __future__ import annotations

from typing import Any

import pytest

from handler.jobs import FailureKey, JobDetail, JobView, TaskInstanceView, iso_epoch


@pytest.mark.parametrize(("text", "epoch"), [
    ("2026-05-01T10:30:00Z", 1777631400.0),
    ("2026-05-01T10:30:00+00:00", 1777631400.0),
    ("2026-05-01T18:30:00+08:00", 1777631400.0),
    ("2026-05-01T10:30:00", 1777631400.0),  # no zone: UTC as the API writes it, not the host's
    ("2026-05-01T10:30:00.250Z", 1777631400.25),
    ("1777631400", 1777631400.0),
])
def test_iso_epoch_reads_the_api_times(text: str, epoch: float) -> None:
    assert iso_epoch(text) == epoch


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-45T99:00:00Z", "10:30", "12"])
def test_iso_epoch_refuses_what_is_not_a_time_with_a_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        iso_epoch(text)


def view(**fields: Any) -> JobView:
    return JobView.model_validate({"JobId": "job-abcd1234", "JobState": "FAILED", **fields})


@pytest.mark.parametrize("end_time", [None, "", "  ", "yesterday", "2026-02-30T10:00:00Z", "9" * 400])
def test_a_failed_job_with_an_unusable_end_time_has_no_key_and_says_so(end_time: str | None) -> None:
    v = view(EndTime=end_time)
    assert v.failure_key("ap-guangzhou") is None
    assert v.bad_end_time
    assert v.end_epoch is None


def test_a_failed_job_with_an_end_time_has_its_key() -> None:
    v = view(EndTime="2026-05-01T10:30:00Z")
    assert v.failure_key("ap-guangzhou") == FailureKey("ap-guangzhou", "job-abcd1234",
                                                       "2026-05-01T10:30:00Z")
    assert not v.bad_end_time


def test_only_a_failed_job_has_a_failure_key() -> None:
    for state in ("RUNNING", "SUCCEED", "FAILED_INTERRUPTED"):  # RetryJobs takes FAILED jobs only
        v = view(JobState=state, EndTime="2026-05-01T10:30:00Z")
        assert v.failure_key("ap-guangzhou") is None and not v.bad_end_time


def test_an_end_time_sent_as_a_number_is_kept_as_text_not_refused() -> None:
    v = view(EndTime=1777631400)
    assert v.EndTime == "1777631400" and v.end_epoch == 1777631400.0


@pytest.mark.parametrize(("raw", "code"), [(137, 137), ("137", 137), (" -1 ", -1), (2.0, 2), (None, None),
                                           ("killed", None), (True, None), (1.5, None)])
def test_exit_code_is_an_integer_or_none_never_a_refused_answer(raw: Any, code: int | None) -> None:
    assert TaskInstanceView.model_validate({"ExitCode": raw}).ExitCode == code


def test_failed_tasks_and_instances_include_failed_interrupted() -> None:
    detail = JobDetail.model_validate({"JobId": "job-abcd1234", "TaskSet": [
        {"TaskName": "a", "TaskState": "FAILED"}, {"TaskName": "b", "TaskState": "FAILED_INTERRUPTED"},
        {"TaskName": "c", "TaskState": "SUCCEED"}]})
    assert [t.TaskName for t in detail.failed_tasks] == ["a", "b"]
    states = [TaskInstanceView(TaskInstanceState=s).failed for s in ("FAILED_INTERRUPTED", "SUCCEED")]
    assert states == [True, False]


def test_the_detailed_reasons_are_read_under_their_api_names() -> None:
    detail = JobDetail.model_validate({"JobId": "job-abcd1234", "StateReason": "a",
                                       "StateDetailedReason": "b", "TaskSet": [{
                                           "TaskName": "t", "TaskState": "FAILED", "TaskInstanceSet": [
                                               {"StateReason": "c", "StateDetailedReason": "d"}]}]})
    assert (detail.StateReason, detail.StateDetailedReason) == ("a", "b")
    instance = detail.TaskSet[0].TaskInstanceSet[0]
    assert (instance.StateReason, instance.StateDetailedReason) == ("c", "d")


def test_a_tag_without_a_value_reads_as_empty_text() -> None:
    assert view(Tags=[{"Key": "team", "Value": None}, {"Key": "x"}]).Tags == {"team": "", "x": ""}
