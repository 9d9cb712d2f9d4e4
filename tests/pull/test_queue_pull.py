"""Topic → queue → pull → ledger → one RetryJobs per failure, counted at the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.cmq import QueueError
from handler.commands import pull as pull_command
from handler.notices import Notice
from handler.observe import Observer
from handler.pull import pull
from handler.retrier import Deadline

from .conftest import DLQ, MAX_RECEIVES, QUEUE, after_visibility_timeout, client, pull_once

ROOT = Path(__file__).resolve().parents[2]


def failed_jobs(emu: Emulator, n: int) -> list[str]:
    return [emu.add_failed_job(f"job{i}", [Outcome.succeed()]) for i in range(n)]


def test_each_notice_delivered_three_times_retries_each_failure_once(queue: Emulator) -> None:
    jobs = failed_jobs(queue, 20)
    for _ in range(3):
        for job in jobs:
            queue.publish(job)
    assert queue.cmq.depth(QUEUE) == 60
    report = pull_once()
    assert (report.received, report.accepted, report.deleted, report.poison) == (60, 60, 60, 0)
    assert report.batches == 4 and report.stopped == "empty"  # 16 a batch
    assert queue.cmq.depth(QUEUE) == 0
    assert {j: queue.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)
    assert queue.count("RetryJobs", error=None) == 1  # one group commit for all 20


@pytest.mark.parametrize("tick", [{"Type": "Timer", "Message": "pull"},
                                  {"source": "aws.events", "detail-type": "Scheduled Event",
                                   "detail": {"autoretry": "pull"}}], ids=["scf", "aws"])
def test_the_functions_pull_tick_pulls_the_queue_and_retries_each_failure_once(
        queue: Emulator, tick: dict[str, object]) -> None:
    jobs = failed_jobs(queue, 5)
    for _ in range(3):
        for job in jobs:
            queue.publish(job)
    answer = app.main_handler(tick, {"time_limit_in_ms": 20000})
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200
    assert (body["received"], body["accepted"], body["deleted"]) == (15, 15, 15)
    assert queue.cmq.depth(QUEUE) == 0
    assert {j: queue.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)


def test_message_received_but_never_deleted_reappears_and_still_retries_once(queue: Emulator) -> None:
    (job,) = failed_jobs(queue, 1)
    queue.publish(job)
    crashed = client().receive()  # a consumer that died before deleting
    assert len(crashed) == 1 and crashed[0].receive_count == 1
    assert pull_once().received == 0  # hidden for the visibility timeout
    after_visibility_timeout(queue)
    report = pull_once()
    assert report.received == 1 and report.deleted == 1
    assert queue.cmq.depth(QUEUE) == 0
    assert queue.retry_counts()[job] == 1
    assert queue.count("RetryJobs", error=None) == 1


CRASH_AFTER_ENQUEUE = """
import os, signal, sys
from handler import app
from handler.cmq import QueueSettings
from handler.observe import Observer
from handler.ingress import accept_notices
from handler.pull import pull
from handler.retrier import Deadline
rt = app.runtime()
observer = Observer(quiet=True)
retrier = rt.retrier(observer)
def accept_then_die(notices):
    accept_notices(retrier, notices, observer, rt.config.regions)
    os.kill(os.getpid(), signal.SIGKILL)  # between the ledger and the delete
pull(QueueSettings.from_env().client(), accept_then_die, Deadline.after(20), observer=observer)
"""


def test_pulling_process_killed_between_ledger_and_delete_loses_nothing(queue: Emulator) -> None:
    jobs = failed_jobs(queue, 3)
    for job in jobs:
        queue.publish(job)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CRASH_AFTER_ENQUEUE], cwd=ROOT, env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr[-2000:]
    assert queue.cmq.depth(QUEUE) == 3 and queue.count("RetryJobs") == 0
    after_visibility_timeout(queue)
    report = pull_once()
    assert report.received == 3 and report.deleted == 3
    assert {j: queue.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)


def test_poison_message_is_dead_lettered_after_max_receives_never_retried_never_deleted(
    queue: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    poison = queue.cmq.send(QUEUE, '{"Events": [{"EventName": "JOB_FAILED", "Batch": {}}]}')
    (job,) = failed_jobs(queue, 1)
    queue.publish(job)
    receives = []
    for _ in range(MAX_RECEIVES + 1):
        report = pull_once(Observer())
        receives.append(report.poison)
        after_visibility_timeout(queue)
    assert receives == [1] * MAX_RECEIVES + [0]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    logged = [ln["receive_count"] for ln in lines if ln["message"].startswith("poison message")]
    assert logged == list(range(1, MAX_RECEIVES + 1))  # once per receive, with its count
    q = queue.cmq.queues[QUEUE]
    assert poison in q.dead_lettered and poison not in q.deleted
    assert queue.cmq.depth(DLQ) == 1 and queue.cmq.depth(QUEUE) == 0
    assert queue.retry_counts()[job] == 1
    assert queue.count("RetryJobs", error=None) == 1


def test_ledger_failure_deletes_nothing_and_the_batch_comes_back(queue: Emulator) -> None:
    jobs = failed_jobs(queue, 2)
    for job in jobs:
        queue.publish(job)

    def ledger_down(notices: list[tuple[str | None, Notice]]) -> None:
        raise ConnectionError("redis is away")

    report = pull(client(), ledger_down, Deadline.after(10), observer=Observer(quiet=True))
    assert report.stopped == "ledger error" and report.deleted == 0
    assert queue.cmq.depth(QUEUE) == 2
    after_visibility_timeout(queue)
    assert pull_once().deleted == 2
    assert {j: queue.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)


def test_pull_takes_no_batch_it_has_no_time_to_finish(queue: Emulator) -> None:
    (job,) = failed_jobs(queue, 1)
    queue.publish(job)
    seen: list[Any] = []
    report = pull(client(), seen.append, Deadline.after(1.0), observer=Observer(quiet=True))
    assert report.stopped == "time" and report.received == 0 and not seen
    assert pull_once().received == 1  # still visible: nothing was hidden by the stopped pull


def test_a_wrong_key_is_refused_by_the_queue_and_stops_the_pull(
    queue: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    (job,) = failed_jobs(queue, 1)
    queue.publish(job)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "not-the-key")
    with pytest.raises(QueueError) as refused:
        client().receive()
    assert refused.value.code == 4100
    report = pull_once()
    assert report.stopped == "queue error" and report.received == 0
    assert queue.cmq.depth(QUEUE) == 1


def test_pull_command_once_drains_the_queue_and_retries(
    queue: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = failed_jobs(queue, 2)
    for job in jobs:
        queue.publish(job)
    assert pull_command.main(["--once", "--seconds", "20"]) == 0
    out = capsys.readouterr().out
    assert "2 received, 2 in the ledger, 2 deleted, 0 poison, 0 foreign; 2 retried" in out
    assert {j: queue.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)


def test_a_tick_starts_retrying_while_the_queue_is_still_being_read(queue: Emulator) -> None:
    # A burst fills the queue faster than one RetryJobs turn: retries start between batches
    # instead of after the last one, and the tick still retries each failure once.
    jobs = failed_jobs(queue, 400)
    for job in jobs:
        queue.publish(job)
    report = pull_once()
    assert report.received == 400 and report.deleted == 400
    receives = [c["t"] for c in queue.cmq.dataflow_calls
                if c["action"] == "BatchReceiveMessage" and c["count"]]
    retries = sorted(c["t"] for c in queue.calls if c["action"] == "RetryJobs" and c["error"] is None)
    assert retries and retries[0] < max(receives)
    assert {j: queue.retry_counts()[j] for j in jobs} == dict.fromkeys(jobs, 1)
