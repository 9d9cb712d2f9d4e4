"""`python -m handler ledger list|show|stats`: what operators read, on every store.

The ledger is filled through its own API (as the retrier fills it) with a clock set back in time,
then read through the command, with AUTORETRY_STORE naming the store as in a deployment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.commands.ledger import main as ledger_cli
from handler.jobs import FailureKey, JobRef
from handler.ledger import Ledger, open_store
from handler.policy import Action, RetryDecision

from .conftest import FakeClock, SharedStore

REGION = "ap-guangzhou"
ROOT = Path(__file__).resolve().parents[2]


def _retry(reason: str) -> RetryDecision:
    return RetryDecision(Action.RETRY, "spot", reason)


def _key(job: str, end: str) -> FailureKey:
    return FailureKey(REGION, job, end)


@pytest.fixture
def filled(shared_store: SharedStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """A ledger with a history; yields the current time the history was written up to."""
    monkeypatch.setenv("AUTORETRY_STORE", shared_store.url)
    for name in ("AUTORETRY_POLICY", "AUTORETRY_BATCH_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    app.reset_runtime()
    store = open_store(shared_store.url)
    clock = FakeClock(time.time() - 3 * 3600)
    ledger = Ledger(store, clock=clock, owner="flusher-1")
    # job-aaaaaaaa: retried 3 h ago; failed again, throttled 30 min ago (released, pending again)
    ledger.claim(_key("job-aaaaaaaa", "2026-01-01T00:00:00Z"), _retry("retry 1 of 3"), 60)
    ledger.record_retried(_key("job-aaaaaaaa", "2026-01-01T00:00:00Z"))
    clock.advance(2.5 * 3600)
    ledger.claim(_key("job-aaaaaaaa", "2026-01-01T03:00:00Z"), _retry("retry 2 of 3"), 60)
    ledger.release(_key("job-aaaaaaaa", "2026-01-01T03:00:00Z"), "released: throttled (RequestLimitExceeded)")
    # job-bbbbbbbb: skipped by a rule 20 min ago
    clock.advance(600)
    ledger.record_skip(_key("job-bbbbbbbb", "2026-01-01T03:10:00Z"), "bugs", "exit code 1 is a bug")
    # job-cccccccc: retried 5 min ago; job-dddddddd: called just now, answer lost (lease held)
    clock.advance(900)
    ledger.claim(_key("job-cccccccc", "2026-01-01T03:25:00Z"), _retry("retry 1 of 3"), 60)
    ledger.record_retried(_key("job-cccccccc", "2026-01-01T03:25:00Z"))
    clock.now = time.time()
    ledger.claim(_key("job-dddddddd", "2026-01-01T03:30:00Z"), _retry("retry 1 of 3"), 600)
    ledger.mark_ambiguous(_key("job-dddddddd", "2026-01-01T03:30:00Z"), clock.now + 30,
                          "ambiguous: InternalError")
    # the queue: two jobs due, one of them taken by a flusher (its entry leased)
    ledger.enqueue(JobRef(REGION, "job-dddddddd"), event_name="JOB_FAILED")
    ledger.take(1, 60)
    ledger.enqueue(JobRef(REGION, "job-eeeeeeee"), event_name="JOB_FAILED")
    store.close()
    yield clock.now
    app.reset_runtime()


def _list(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert ledger_cli(["list", "--json", *args]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return rows


def test_list_shows_every_decision_newest_first(filled: float, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    rows = _list(capsys)
    assert [(r["job"], r["outcome"]) for r in rows] == [
        ("job-dddddddd", "ambiguous: InternalError"),
        ("job-cccccccc", "retried"),
        ("job-bbbbbbbb", "skipped"),
        ("job-aaaaaaaa", "released: throttled (RequestLimitExceeded)"),
        ("job-aaaaaaaa", "retried"),
    ]
    assert rows[2]["reason"] == "exit code 1 is a bug" and rows[2]["rule"] == "bugs"


def test_list_filters_by_job(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _list(capsys, "--job", "job-aaaaaaaa")
    assert [r["key"] for r in rows] == [f"{REGION}/job-aaaaaaaa/2026-01-01T03:00:00Z",
                                        f"{REGION}/job-aaaaaaaa/2026-01-01T00:00:00Z"]


@pytest.mark.parametrize(("outcome", "jobs"), [
    ("retried", ["job-cccccccc", "job-aaaaaaaa"]),
    ("skipped", ["job-bbbbbbbb"]),
    ("released", ["job-aaaaaaaa"]),  # the word before the detail: "released: throttled (...)"
    ("ambiguous", ["job-dddddddd"]),
    ("claimed", []),
])
def test_list_filters_by_outcome(filled: float, capsys: pytest.CaptureFixture[str], outcome: str,
                                 jobs: list[str]) -> None:
    assert [r["job"] for r in _list(capsys, "--outcome", outcome)] == jobs


def test_list_filters_by_time(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert {r["job"] for r in _list(capsys, "--since", "1h")} == {
        "job-aaaaaaaa", "job-bbbbbbbb", "job-cccccccc", "job-dddddddd"}
    assert [r["job"] for r in _list(capsys, "--since", "10m")] == ["job-dddddddd", "job-cccccccc"]
    assert len(_list(capsys, "--since", "1d")) == 5
    assert [r["job"] for r in _list(capsys, "--since", "1h", "--outcome", "retried")] == ["job-cccccccc"]


def test_list_refuses_a_since_it_cannot_read(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("2 hours", "h", "90"):
        with pytest.raises(SystemExit) as info:
            ledger_cli(["list", "--since", bad])
        assert info.value.code == 2
        assert "argument --since: expected e.g. 30m, 2h, 1d" in capsys.readouterr().err


def test_list_as_a_table_has_one_line_per_decision(filled: float, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    assert ledger_cli(["list", "--job", "job-bbbbbbbb"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:5] == ["time", "job", "outcome", "rule", "reason"]
    assert len(lines) == 1 and "skipped" in lines[0] and "exit code 1 is a bug" in lines[0]


def test_show_gives_each_failure_with_decision_reason_and_attempts_left(
        filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-aaaaaaaa"]) == 0
    out = capsys.readouterr().out
    assert f"job job-aaaaaaaa ({REGION})" in out
    # retried once (the throttled claim was refunded): 2 of the default 3 left
    assert 'retries spent: {"attempts": 1}; attempts left (default budget 3): 2' in out
    [first] = [line for line in out.splitlines() if "2026-01-01T00:00:00Z" in line]
    [second] = [line for line in out.splitlines() if "2026-01-01T03:00:00Z" in line]
    assert "RETRY -> retried  [spot] retry 1 of 3" in first
    assert "RETRY -> released: throttled (RequestLimitExceeded)  [spot] retry 2 of 3" in second


def test_show_names_the_failure_still_awaiting_its_outcome(filled: float,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-dddddddd", "--region", REGION]) == 0
    out = capsys.readouterr().out
    assert f"pending outcome: {REGION}/job-dddddddd/2026-01-01T03:30:00Z" in out
    assert "RETRY -> ambiguous: InternalError" in out


def test_show_of_an_unknown_job_says_so(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-zzzzzzzz"]) == 1
    assert f"no record of {REGION}/job-zzzzzzzz" in capsys.readouterr().out


def test_stats_count_queue_leases_and_recent_retries(filled: float,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["stats", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["queue_depth"] == 2
    assert figures["queue_leased"] == 1  # job-dddddddd's entry, taken by a flusher
    assert figures["queue_due_now"] == 1  # job-eeeeeeee's
    assert figures["leases_held"] == 1  # job-dddddddd's failure, awaiting a re-read
    assert figures["ambiguous"] == 1
    assert figures["retries_last_hour"] == 1  # job-cccccccc; job-aaaaaaaa's was 3 h ago
    assert figures["skips_last_hour"] == 1
    assert figures["failures_known"] == 4  # the released claim was forgotten


def test_stats_as_text_names_each_figure(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["stats"]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert out["queue_depth"] == "2" and out["leases_held"] == "1" and out["retries_last_hour"] == "1"


def test_an_unreachable_store_is_named_without_its_password(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AUTORETRY_STORE": "redis://:s3cret@127.0.0.1:1/0",
           "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "handler", "ledger", "stats"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ledger unavailable: redis://127.0.0.1:1/0" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
