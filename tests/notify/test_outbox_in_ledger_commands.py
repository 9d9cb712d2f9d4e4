"""The outbox as operators see it: `ledger stats` counts the give-up messages still pending and those
given up (expired); `ledger show JOB` lists the job's messages with what each channel did."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from handler.commands.ledger import main as ledger_cli
from handler.jobs import FailureKey
from handler.ledger import Ledger, open_store
from handler.notify import Outbox

from .conftest import FakeClock, failure, give_up

JOB = "job-3k9x2m1a"


def test_ledger_stats_counts_pending_and_expired_give_up_messages(
        function_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(os.environ["AUTORETRY_STORE"])
    outbox = Outbox(store)
    keys = [failure(i) for i in range(4)]
    for key in keys:
        outbox.add(key, give_up(key))
    sent = outbox.claim(str(keys[0]), 30)
    expired = outbox.claim(str(keys[1]), 30)
    assert sent is not None and expired is not None
    assert outbox.mark_sent(sent) and outbox.expire(expired, "wecom: transient: HTTP 503: down")
    store.close()
    assert ledger_cli(["stats", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["notifications_pending"], figures["notifications_expired"]) == (2, 1)
    assert ledger_cli(["stats"]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert (out["notifications_pending"], out["notifications_expired"]) == ("2", "1")


def test_ledger_show_lists_the_jobs_give_up_messages_with_each_channels_state(
        function_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(os.environ["AUTORETRY_STORE"])
    clock = FakeClock()
    ledger, outbox = Ledger(store), Outbox(store, clock=clock)
    first = FailureKey("ap-guangzhou", JOB, "2026-11-24T10:00:05Z")
    second = FailureKey("ap-guangzhou", JOB, "2026-11-25T08:00:00Z")
    another_job = FailureKey("ap-guangzhou", "job-zzzzzzzz", "2026-11-24T10:00:05Z")
    for key in (first, second, another_job):
        ledger.record_skip(key, "everything-else", "max_attempts: the job's cap of 3 retries is spent",
                           "max_attempts")
        outbox.add(key, give_up(key))
        clock.advance(1)  # created one after the other: shown oldest first
    # The first: WeCom took it, Slack refused it twice and it waits for another try.
    claimed = outbox.claim(str(first), 30)
    assert claimed is not None and outbox.mark_done(claimed, "wecom")
    assert outbox.reschedule(claimed, clock.now + 60, "slack: permanent: HTTP 404: channel_not_found",
                             {"slack": 2}, [])
    # The second: sent, DingTalk given up on after five refusals.
    claimed = outbox.claim(str(second), 30)
    assert claimed is not None
    claimed.done = ["wecom"]
    assert outbox.mark_sent(claimed, ["dingtalk"])
    store.close()

    assert ledger_cli(["show", JOB]) == 0
    out = capsys.readouterr().out
    assert "job-zzzzzzzz" not in out
    shown = out.split("\ngive-up messages:\n", 1)[1].splitlines()
    assert shown[0].startswith("failure of 2026-11-24T10:00:05Z: pending (1 failed try), next try at ")
    assert [line.split(None, 1) for line in shown[1:3]] == [["wecom", "took it"],
                                                            ["slack", "refused it 2 times"]]
    assert shown[3] == "  last error: slack: permanent: HTTP 404: channel_not_found"
    assert shown[4].startswith("failure of 2026-11-25T08:00:00Z: sent at ")
    assert [line.split(None, 1) for line in shown[5:]] == [
        ["wecom", "took it"], ["dingtalk", "given up: it refused the message 5 times"]]
