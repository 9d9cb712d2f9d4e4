"""A notice for a region this function does not serve stays in the queue, as the HTTP path refuses
it: visible again after the visibility timeout, set aside by the dead-letter queue after
MaxReceiveCount receives, and acted on at its next receive once the region is added."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.commands import pull as pull_command
from handler.observe import Observer

from .conftest import DLQ, MAX_RECEIVES, QUEUE, pull_once

FOREIGN = "ap-shanghai"  # the function serves AUTORETRY_REGION's default, ap-guangzhou
KEPT_LINE = "message for a region not in AUTORETRY_REGION left for the dead-letter queue"
# Hidden for 0.5 s at the emulator's 20x (not the 50 ms of tests/pull's queue): a kept message
# must not come back within one pull, however slow the machine, or the counts below would vary.
VISIBILITY_S = 10


@pytest.fixture
def queue(queue: Emulator) -> Emulator:
    """tests/pull's queue, with a visibility timeout longer than one pull takes."""
    queue.cmq.queues[QUEUE].visibility_timeout_s = VISIBILITY_S
    return queue


def after_visibility_timeout(emu: Emulator) -> None:
    time.sleep(VISIBILITY_S / emu.speedup + 0.05)


def failed_job(emu: Emulator, name: str) -> str:
    return emu.add_failed_job(name, [Outcome.succeed()])


def notice_in(emu: Emulator, job: str, region: str) -> dict[str, Any]:
    """The notice Batch publishes for `job`, as if the job ran in `region`."""
    notice = emu.notice(job)
    for event in notice["Events"]:
        event["Region"] = region
    return notice


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_a_notice_for_a_region_not_served_stays_in_the_queue_and_a_served_one_is_deleted(
        queue: Emulator) -> None:
    served, foreign = failed_job(queue, "served"), failed_job(queue, "foreign")
    queue.publish(served)
    kept = queue.cmq.send(QUEUE, json.dumps(notice_in(queue, foreign, FOREIGN)))
    observer = Observer(quiet=True)
    report = pull_once(observer)
    q = queue.cmq.queues[QUEUE]
    assert queue.cmq.depth(QUEUE) == 1 and kept in q.messages and kept not in q.deleted
    assert (report.received, report.accepted, report.deleted, report.foreign) == (2, 1, 1, 1)
    assert observer.metric_values()["ForeignRegion"] == 1  # the metric the HTTP path's 403 counts
    assert queue.retry_counts()[served] == 1 and queue.retry_counts().get(foreign, 0) == 0


def test_a_kept_notice_is_logged_on_each_receive_then_dead_lettered_never_retried(
        queue: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    job = failed_job(queue, "foreign")
    kept = queue.cmq.send(QUEUE, json.dumps(notice_in(queue, job, FOREIGN)))
    kept_each_time = []
    for _ in range(MAX_RECEIVES + 1):
        kept_each_time.append(pull_once(Observer()).foreign)
        after_visibility_timeout(queue)
    q = queue.cmq.queues[QUEUE]
    assert kept in q.dead_lettered and kept not in q.deleted
    assert queue.cmq.depth(DLQ) == 1 and queue.cmq.depth(QUEUE) == 0
    assert kept_each_time == [1] * MAX_RECEIVES + [0]
    lines = [ln for ln in log_lines(capsys) if ln["message"] == KEPT_LINE]
    assert [ln["receive_count"] for ln in lines] == list(range(1, MAX_RECEIVES + 1))
    assert {ln["message_id"] for ln in lines} == {kept} and {ln["regions"] for ln in lines} == {FOREIGN}
    assert queue.count("RetryJobs") == 0


def test_a_kept_notice_is_acted_on_at_its_next_receive_once_its_region_is_added(
        queue: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    job = failed_job(queue, "foreign")
    queue.cmq.send(QUEUE, json.dumps(notice_in(queue, job, FOREIGN)))
    pull_once()
    assert queue.cmq.depth(QUEUE) == 1
    monkeypatch.setenv("AUTORETRY_REGION", f"ap-guangzhou,{FOREIGN}")
    after_visibility_timeout(queue)
    report = pull_once()
    assert queue.cmq.depth(QUEUE) == 0
    assert (report.received, report.accepted, report.deleted, report.foreign) == (1, 1, 1, 0)
    assert queue.retry_counts()[job] == 1


def test_a_message_naming_a_served_and_a_foreign_region_stays_and_retries_each_job_once(
        queue: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The served event goes in the ledger at every receive (the ledger absorbs the repeats); the
    # message stays for the foreign one, which is acted on once its region is added.
    served, foreign = failed_job(queue, "served"), failed_job(queue, "foreign")
    notice = notice_in(queue, served, "ap-guangzhou")
    notice["Events"] += notice_in(queue, foreign, FOREIGN)["Events"]
    mixed = queue.cmq.send(QUEUE, json.dumps(notice))
    for _ in range(2):
        report = pull_once()
        assert queue.cmq.depth(QUEUE) == 1 and mixed not in queue.cmq.queues[QUEUE].deleted
        assert (report.received, report.accepted, report.deleted, report.foreign) == (1, 0, 0, 1)
        after_visibility_timeout(queue)
    assert queue.retry_counts()[served] == 1 and queue.retry_counts().get(foreign, 0) == 0
    monkeypatch.setenv("AUTORETRY_REGION", f"ap-guangzhou,{FOREIGN}")
    report = pull_once()
    assert queue.cmq.depth(QUEUE) == 0 and report.deleted == 1
    assert {j: queue.retry_counts()[j] for j in (served, foreign)} == {served: 1, foreign: 1}
    assert queue.count("RetryJobs", error=None) == 2


def test_the_pull_command_and_the_pull_tick_count_foreign_notices(
        queue: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    job = failed_job(queue, "foreign")
    queue.cmq.send(QUEUE, json.dumps(notice_in(queue, job, FOREIGN)))
    assert pull_command.main(["--once", "--seconds", "20"]) == 0
    assert "1 received, 0 in the ledger, 0 deleted, 0 poison, 1 foreign; 0 retried" in \
        capsys.readouterr().out
    after_visibility_timeout(queue)
    answer = app.main_handler({"Type": "Timer", "Message": "pull"}, {"time_limit_in_ms": 20000})
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200
    assert (body["received"], body["deleted"], body["foreign"]) == (1, 0, 1)
    assert queue.cmq.depth(QUEUE) == 1
