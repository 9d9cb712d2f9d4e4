"""Notices Tencent does not document, read whichever way the real service writes them; notices for
regions this function does not serve, and notices that try to make one delivery cost many calls.

Each delivery goes through both entry points to the in-memory Batch API, which counts every call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.app import RedeliverLater
from handler.commands.serve import apigw_event
from handler.ingress import read_notice
from handler.notices import MAX_EVENTS_PER_NOTICE
from tests.core.fakes import FakeGateway

from .conftest import Deployed, LambdaContext, recent_end, scf_context

JOB = "job-v4r1ant0"


class CountingGateway(FakeGateway):
    """The fake Batch API, counting DescribeJobs calls too (RetryJobs calls are in `retried`)."""

    def __init__(self) -> None:
        super().__init__()
        self.describe_calls: list[tuple[str, list[str]]] = []

    def describe_jobs(self, region: str, job_ids: list[str]) -> dict[str, Any]:
        self.describe_calls.append((region, list(job_ids)))
        return super().describe_jobs(region, job_ids)


@pytest.fixture
def batch(fake_batch: FakeGateway) -> CountingGateway:
    return CountingGateway()


@pytest.fixture
def deployed(batch: CountingGateway) -> Iterator[Deployed]:
    function = Deployed(batch)
    yield function
    function.close()


def deliver(function: Deployed, entry: str, notice: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = apigw_event("POST", "/events", {"Content-Type": "text/plain"}, json.dumps(notice).encode())
    if entry == "lambda_handler":
        answer = function.lambda_handler(event, LambdaContext())
    else:
        answer = function.main_handler(event, scf_context())
    return answer["statusCode"], json.loads(answer["body"])


def event(**fields: Any) -> dict[str, Any]:
    return {"EventVersion": "1.0", "EventTime": "2026-11-24T10:00:00Z", "Region": "ap-guangzhou",
            "EventName": "JOB_FAILED", **fields}


def log_lines(out: str) -> list[dict[str, Any]]:
    # The function's log lines; other JSON on stdout (EMF metric lines, written by a continuation
    # another test left running) is not a log line.
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "message" in line]


ENTRIES = ["main_handler", "lambda_handler"]

VARIANTS: dict[str, dict[str, Any]] = {
    "job id at the event's top level": {"Events": [event(JobId=JOB)]},
    "job id in the task instance": {"Events": [event(EventName="TASK_INSTANCE_FAILED", Batch={
        "TaskName": "render", "TaskInstance": {"JobId": JOB, "TaskInstanceIndex": 3}})]},
    "job id in the task": {"Events": [event(EventName="TASK_FAILED", Batch={
        "Task": {"JobId": JOB, "TaskName": "render"}})]},
    "event vars as Key/Value": {"Events": [event(Batch={"JobId": JOB},
                                                 EventVars=[{"Key": "pipeline", "Value": "n"}])]},
    "event vars in lower case": {"Events": [event(Batch={"JobId": JOB},
                                                  EventVars=[{"name": "pipeline", "value": 7}])]},
    "event vars as an object": {"Events": [event(Batch={"JobId": JOB},
                                                 EventVars={"pipeline": "n", "attempt": 2})]},
    "times as numbers": {"Events": [event(Batch={"JobId": JOB, "EndTime": 1795000000},
                                          EventTime=1795000000.5)]},
    "any event version": {"Events": [event(Batch={"JobId": JOB}, EventVersion=2)]},
    "unknown fields anywhere": {"Events": [event(Batch={"JobId": JOB, "Shiny": {"new": [1, 2]}},
                                                 Extra={"nested": True})], "Trace": "x"},
    "one event not in a list": {"Events": event(Batch={"JobId": JOB})},
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_an_undocumented_notice_variant_is_accepted_and_retried_once(
    deployed: Deployed, batch: CountingGateway, variant: str, entry: str
) -> None:
    batch.fail(JOB, recent_end())
    status, body = deliver(deployed, entry, VARIANTS[variant])
    assert status == 200, body
    assert body["accepted"] == 1
    assert batch.retried == [[JOB]]


@pytest.mark.parametrize(("shape", "expected"), [
    ([{"Key": "a", "Value": "1"}, {"Name": "b", "Value": 2}], {"a": "1", "b": "2"}),
    ({"a": "1", "b": None, "c": True}, {"a": "1", "b": "", "c": "true"}),
    (None, {}),
])
def test_event_vars_read_as_pairs_or_an_object(shape: Any, expected: dict[str, str]) -> None:
    notice, _ = read_notice(json.dumps({"Events": [event(Batch={"JobId": JOB}, EventVars=shape)]}))
    assert notice.Events[0].vars == expected


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_batch_event_we_do_not_act_on_gets_200_a_log_line_and_a_metric(
    deployed: Deployed, batch: CountingGateway, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 4xx here would have the topic push the message again for a day.
    status, body = deliver(deployed, entry, {"Events": [event(EventName="JOB_EXPLODED",
                                                              Batch={"JobId": JOB})]})
    assert (status, body["accepted"], body["ignored"]) == (200, 0, 1)
    lines = log_lines(capsys.readouterr().out)
    assert any(line["message"] == "event not acted on" and line["event"] == "JOB_EXPLODED"
               for line in lines)
    if entry == "main_handler":
        (metrics,) = [line for line in lines if line["message"] == "metrics"]
        assert metrics["metrics"]["IgnoredEvents"] == 1
    assert batch.describe_calls == [] and batch.retried == []


def test_a_new_shape_is_logged_once_with_its_values_removed(
    deployed: Deployed, batch: CountingGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    batch.fail(JOB, recent_end())
    notice = {"Events": [event(JobId=JOB, Batch={"JobName": "project-falcon-secret-name",
                                                "Cluster": {"Owner": "alice@example.com"}})]}
    for _ in range(3):
        assert deliver(deployed, "main_handler", notice)[0] == 200
    shown = [line for line in log_lines(capsys.readouterr().out)
             if line["message"].startswith("notice of an undocumented shape")]
    assert len(shown) == 1
    sample = json.loads(shown[0]["sample"])
    assert sample["Events"][0]["Batch"]["Cluster"] == {"Owner": "str"}
    assert sample["Events"][0]["JobId"] == "str"
    assert sample["Events"][0]["EventName"] == "JOB_FAILED"
    assert "falcon" not in shown[0]["sample"] and "alice" not in shown[0]["sample"]
    assert JOB not in shown[0]["sample"]


def test_the_documented_shape_is_not_reported_as_new(
    deployed: Deployed, batch: CountingGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    notice = json.loads((Path(__file__).resolve().parents[2] / "events" / "direct-notice.json").read_text())
    assert deliver(deployed, "main_handler", notice)[0] == 200
    assert not any(line["message"].startswith("notice of an undocumented shape")
                   for line in log_lines(capsys.readouterr().out))


# --- hole 2: a notice names a region this function does not serve -----------------------------------

@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("region", ["eu-frankfurt", "ap-shanghai", "na-ashburn"])
def test_a_notice_for_another_region_is_refused_counted_and_never_reaches_the_api(
    deployed: Deployed, batch: CountingGateway, entry: str, region: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    batch.fail(JOB, recent_end())
    status, body = deliver(deployed, entry, {"Events": [event(Region=region, Batch={"JobId": JOB})]})
    assert status == 403
    assert region in body["error"]
    assert batch.describe_calls == [] and batch.retried == []
    lines = log_lines(capsys.readouterr().out)
    assert any(line.get("region") == region and "not in AUTORETRY_REGION" in line["message"]
               for line in lines)
    if entry == "main_handler":
        (metrics,) = [line for line in lines if line["message"] == "metrics"]
        assert metrics["metrics"]["ForeignRegion"] == 1


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_push_mixing_a_served_and_a_foreign_region_is_refused_so_that_the_foreign_event_comes_again(
    deployed: Deployed, batch: CountingGateway, entry: str
) -> None:
    batch.fail(JOB, recent_end())
    other = "job-0000beef"
    mixed = {"Events": [event(Batch={"JobId": JOB}),
                        event(Region="eu-frankfurt", Batch={"JobId": other})]}
    status, body = deliver(deployed, entry, mixed)
    assert status == 403 and "eu-frankfurt" in body["error"]
    assert body["accepted"] == 1
    assert batch.retried == [[JOB]]  # the served event is in the ledger and retried once
    assert deliver(deployed, entry, mixed)[0] == 403  # the redelivery: absorbed, refused again
    assert batch.retried == [[JOB]]


def test_a_direct_invocation_naming_a_foreign_region_fails_so_that_the_platform_redelivers(
    deployed: Deployed, batch: CountingGateway
) -> None:
    batch.fail(JOB, recent_end())
    with pytest.raises(RedeliverLater, match="eu-frankfurt"):
        deployed.main_handler({"Events": [event(Region="eu-frankfurt", Batch={"JobId": JOB})]},
                              scf_context())
    assert batch.describe_calls == [] and batch.retried == []


def test_a_region_listed_in_autoretry_region_is_served(
    deployed: Deployed, batch: CountingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORETRY_REGION", "ap-guangzhou,ap-shanghai")
    batch.fail(JOB, recent_end())
    status, _ = deliver(deployed, "main_handler", {"Events": [event(Region="ap-shanghai",
                                                                     Batch={"JobId": JOB})]})
    assert status == 200
    assert batch.describe_calls[0][0] == "ap-shanghai"
    assert batch.retried == [[JOB]]


# --- hole 5: one notice must not burn the shared DescribeJobs budget ---------------------------------

@pytest.mark.parametrize("job_id", ["job-M0000000X", "job-m000000x0", "job-ABCD1234", "job-abc1234",
                                    "job-abcd1234 ", "JOB-abcd1234", "job-abcd-123"])
def test_a_job_id_not_in_the_batch_api_format_is_refused_before_any_call(
    deployed: Deployed, batch: CountingGateway, job_id: str
) -> None:
    status, body = deliver(deployed, "main_handler", {"Events": [event(Batch={"JobId": job_id})]})
    assert status == 400
    assert "not a Batch job id" in body["error"]
    assert batch.describe_calls == [] and batch.retried == []


def test_a_notice_with_more_events_than_the_cap_is_refused(
    deployed: Deployed, batch: CountingGateway
) -> None:
    events = [event(Batch={"JobId": f"job-{i:08d}"}) for i in range(MAX_EVENTS_PER_NOTICE + 1)]
    status, body = deliver(deployed, "main_handler", {"Events": events})
    assert status == 400
    assert f"at most {MAX_EVENTS_PER_NOTICE}" in body["error"]
    assert batch.describe_calls == []


def test_a_notice_at_the_cap_costs_at_most_one_describe_jobs_call(
    deployed: Deployed, batch: CountingGateway
) -> None:
    # 100 well-formed ids nobody owns: the worst a single notice can ask for.
    events = [event(Batch={"JobId": f"job-{i:08d}"}) for i in range(MAX_EVENTS_PER_NOTICE)]
    status, body = deliver(deployed, "main_handler", {"Events": events})
    assert status == 200 and body["accepted"] == MAX_EVENTS_PER_NOTICE
    assert len(batch.describe_calls) == 1
    assert batch.retried == []
