"""`python -m handler ledger list|show|stats`: what operators read, on every store.

The ledger is filled through its own API (as the retrier fills it) with a clock set back in time,
then read through the command, with AUTORETRY_STORE naming the store as in a deployment."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import app
from handler.commands.ledger import MEANING
from handler.commands.ledger import main as ledger_cli
from handler.jobs import FailureKey, JobRef
from handler.ledger import Ledger, open_store
from handler.outcomes import Outcome
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
    for bad in ("2 hours", "h", "-1h", "yesterday"):
        with pytest.raises(SystemExit) as info:
            ledger_cli(["list", f"--since={bad}"])
        assert info.value.code == 2
        assert "argument --since: expected a duration such as" in capsys.readouterr().err


def test_list_reads_since_as_a_policy_file_does(filled: float, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    # handler.policy.durations: compound spellings and plain seconds, as in a policy file
    assert _list(capsys, "--since", "1h30m") == _list(capsys, "--since", "5400")
    assert [r["job"] for r in _list(capsys, "--since", "10m")] == ["job-dddddddd", "job-cccccccc"]


def test_outcome_refuses_a_word_outside_the_vocabulary_and_lists_the_words(
        filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        ledger_cli(["list", "--outcome", "retry"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'retry'" in err
    assert all(f"'{o.value}'" in err for o in Outcome)


def test_help_lists_every_outcome_word_with_its_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["list", "--help"], ["--help"]):
        with pytest.raises(SystemExit):
            ledger_cli(args)
        lines = capsys.readouterr().out.splitlines()
        for o in Outcome:
            assert any(line.split(None, 1) == [o.value, MEANING[o]] for line in lines), o


def test_every_outcome_word_has_a_meaning() -> None:
    assert set(MEANING) == set(Outcome)


def test_limit_refuses_negatives_and_caps_the_rows(filled: float,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        ledger_cli(["list", "--limit", "-1"])
    assert info.value.code == 2
    assert "argument --limit: expected 0 or more, got -1" in capsys.readouterr().err
    assert _list(capsys, "--limit", "0") == []
    assert [r["job"] for r in _list(capsys, "--limit", "2")] == ["job-dddddddd", "job-cccccccc"]


def test_list_as_a_table_has_one_line_per_decision(filled: float, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    assert ledger_cli(["list", "--job", "job-bbbbbbbb"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["time", "(UTC)", "job", "outcome", "rule", "reason"]
    assert len(lines) == 1
    assert lines[0].split()[2:5] == ["job-bbbbbbbb", "skipped", "bugs"]
    assert "exit code 1 is a bug; failure of 2026-01-01T03:10:00Z" in lines[0]


def _history(out: str) -> list[list[str]]:
    """`ledger show`'s rows: date, time, outcome, rule, then the reason's words."""
    return [line.split() for line in out.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:", line)]


def test_show_tells_each_decision_in_words_with_rule_reason_and_retries_spent(
        filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-aaaaaaaa"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out  # words, not JSON
    assert f"job job-aaaaaaaa in {REGION}" in out
    assert "retries spent: 1 on attempts" in out  # the throttled claim was refunded
    rows = _history(out)
    assert [r[2:4] for r in rows] == [["retried", "spot"], ["released", "spot"]]  # oldest first
    assert " ".join(rows[0][4:]) == "retry 1 of 3; failure of 2026-01-01T00:00:00Z"
    assert " ".join(rows[1][4:]) == ("retry 2 of 3; throttled (RequestLimitExceeded); "
                                     "failure of 2026-01-01T03:00:00Z")
    assert f"released: {MEANING[Outcome.RELEASED]}" in out


def test_show_names_the_failure_still_awaiting_its_outcome(filled: float,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-dddddddd", "--region", REGION]) == 0
    out = capsys.readouterr().out
    assert "awaiting the outcome of a RetryJobs call: failure of 2026-01-01T03:30:00Z" in out
    [row] = _history(out)
    assert row[2] == "ambiguous" and "InternalError;" in row


def test_show_as_json_is_the_stored_record(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-bbbbbbbb", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["job_id"] == "job-bbbbbbbb"
    assert [d["outcome"] for d in record["decisions"]] == ["skipped"]


@pytest.fixture
def noted(filled: float, shared_store: SharedStore) -> Iterator[float]:
    """Decisions that change no failure, kept on the job (not found, repeated; a duplicate of a
    retried failure), and one in a word this version does not know."""
    store = open_store(shared_store.url)
    ledger = Ledger(store)
    ghost = JobRef(REGION, "job-ffffffff")
    for _ in range(3):
        ledger.apply([ledger.note_step(ghost, None, "not_found", "verify", "job not found by DescribeJobs")])
    done = _key("job-cccccccc", "2026-01-01T03:25:00Z")
    ledger.apply([ledger.note_step(done.job, done, "duplicate", "dedupe", "decided already")])
    ledger.apply([ledger.note_step(JobRef(REGION, "job-99999999"), None, "forgotten", "later",
                                   "a word from a newer version")])
    store.close()
    yield filled


def test_show_keeps_decisions_that_change_no_failure_with_their_counts(
        noted: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-ffffffff"]) == 0
    out = capsys.readouterr().out
    [row] = _history(out)
    assert row[2:4] == ["not_found", "verify"]
    assert " ".join(row[4:]) == "job not found by DescribeJobs (seen 2 more times)"
    assert f"not_found: {MEANING[Outcome.NOT_FOUND]}" in out
    assert ledger_cli(["show", "job-cccccccc"]) == 0
    [row] = _history(capsys.readouterr().out)
    assert row[2] == "retried" and " ".join(row[4:]).endswith("(+1 duplicate notice absorbed)")


def test_show_and_list_keep_an_outcome_word_they_do_not_know(
        noted: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-99999999"]) == 0
    out = capsys.readouterr().out
    assert [r[2] for r in _history(out)] == ["forgotten"]
    assert "forgotten: an outcome this version does not know" in out
    assert "job-99999999" in {r["job"] for r in _list(capsys)}


def test_stats_count_skips_by_outcome(noted: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["stats", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    # skipped (job-bbbbbbbb) and not_found (job-ffffffff, once however often it was seen); the
    # duplicate counts on the retried decision it repeats, and an unknown word is no skip
    assert figures["skips_by_outcome_last_hour"] == {"not_found": 1, "skipped": 1}
    assert figures["skips_last_hour"] == 2
    assert figures["retries_last_hour"] == 1


def test_a_relative_sqlite_path_is_reported_as_relative(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTORETRY_STORE", "sqlite:///var/x.db")
    open_store(f"sqlite:///{tmp_path / 'var' / 'x.db'}").close()
    assert ledger_cli(["stats"]) == 0
    assert capsys.readouterr().err == f"ledger: sqlite:///var/x.db (relative to {tmp_path})\n"
    monkeypatch.setenv("AUTORETRY_STORE", f"sqlite:///{tmp_path / 'var' / 'x.db'}")
    assert ledger_cli(["stats"]) == 0
    assert capsys.readouterr().err == ""


def test_show_of_an_unknown_job_says_so(filled: float, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_cli(["show", "job-zzzzzzzz"]) == 1
    assert f"no record of {REGION}/job-zzzzzzzz" in capsys.readouterr().out


def test_the_commands_open_only_the_store(filled: float, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTORETRY_POLICY", "/no/such/policy.yaml")
    monkeypatch.setenv("AUTORETRY_BATCH_ENDPOINT", "127.0.0.1:1")
    assert ledger_cli(["show", "job-aaaaaaaa"]) == 0
    assert ledger_cli(["stats"]) == 0
    assert "job job-aaaaaaaa in" in capsys.readouterr().out
    assert len(_list(capsys)) == 5


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
    assert figures["skips_by_outcome_last_hour"] == {"skipped": 1}
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
    assert done.returncode == 1  # a runtime failure
    assert "ledger unavailable: redis://127.0.0.1:1/0" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
