"""`python -m handler policy check|explain`: output and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from handler.__main__ import main as handler_main
from handler.commands import policy as policy_cli
from handler.commands.policy import main
from handler.jobs import FailureKey
from handler.ledger import Ledger, open_store
from handler.policy import Action, RetryDecision

POLICY = """\
version: 1
default: {action: RETRY, reason: anything else}
limits:
  backoff: {initial: 30s, factor: 2, cap: 10m, jitter: none}
  fleet_budget: {max_retries: 100, window: 10m}
rules:
  - name: nightly
    when: {job_name: 'nightly-*'}
    action: RETRY
    max_attempts: 5
  - name: oom
    when: {exit_code: 137}
    action: SKIP
    reason: out of memory
  - name: spot
    when: {instance_reason: '*reclaim*'}
    action: RETRY_UNCOUNTED
"""

END = "2026-05-01T10:30:00Z"


def describe_job(code: int = 143, reason: str = "Spot instance reclaimed", **extra: Any) -> dict[str, Any]:
    return {"Response": {
        "JobId": "job-abcd1234", "JobName": "render", "JobState": "FAILED", "EndTime": END,
        "StateReason": "a task failed", "Tags": [{"Key": "team", "Value": "ml"}],
        "TaskSet": [{"TaskName": "main", "TaskState": "FAILED", "TaskInstanceSet": [
            {"TaskInstanceIndex": 0, "TaskInstanceState": "FAILED", "ExitCode": code,
             "StateReason": reason}]}],
        "RequestId": "req-1", **extra}}


@pytest.fixture(autouse=True)
def ledger_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """AUTORETRY_STORE for explain: a ledger that does not exist until a test writes to it."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("AUTORETRY_STORE", url)
    return url


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    p, j = tmp_path / "policy.yaml", tmp_path / "job.json"
    p.write_text(POLICY)
    j.write_text(json.dumps(describe_job()))
    return p, j


def test_check_prints_ok_and_a_summary_of_every_rule(files: tuple[Path, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(files[0])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {files[0]}\n")
    assert "default   RETRY (anything else)" in out
    assert "fleet     100 retries per 10m" in out
    assert "backoff   30s x 2^n, cap 10m, jitter none" in out
    assert "   1. nightly  RETRY cap 5\n        when job_name ['nightly-*']" in out
    assert " * 2. oom      SKIP\n        when exit_code in {137}" in out  # * = needs DescribeJob
    assert " * 3. spot     RETRY_UNCOUNTED cap 10 on 'uncounted'" in out
    assert len(out.splitlines()) <= 24  # one screen


def test_check_lists_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: a, action: RETRY, when: {exit_code: ['x']}}\n"
                   "  - {name: b, action: NOPE}\n")
    assert main(["check", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"INVALID: {bad}: 2 problems\n")
    assert "  - rules[0] 'a'.when.exit_code.in[0]: expected an exit code" in captured.err
    assert "  - rules[1] 'b'.action: Input should be 'RETRY', 'SKIP' or 'RETRY_UNCOUNTED'" in captured.err


def test_check_of_a_missing_file_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/nowhere/policy.yaml"]) == 1
    assert "not found" in capsys.readouterr().err


def test_check_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(POLICY))
    assert main(["check", "-"]) == 0
    assert capsys.readouterr().out.startswith("OK: inline policy")


def test_check_of_several_files_prints_one_line_each_and_fails_if_any_is_bad(
        tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nlimits: {max_atempts: 2}\nrules:\n  - {name: a, action: NOPE}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\n")
    assert main(["check", str(files[0]), str(bad), str(empty)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"OK: {files[0]} (3 rules, default RETRY)",
                                         f"OK: {empty} (0 rules, default SKIP)"]
    [line] = captured.err.splitlines()
    assert line.startswith(f"INVALID: {bad}: 2 problems | limits.max_atempts: unknown field")
    assert " | rules[0] 'a'.action: Input should be" in line
    assert main(["check", str(files[0]), str(empty)]) == 0


def test_explain_shows_each_rule_with_why_and_the_decision(files: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(files[0]), "--job", str(files[1]), "--now", "end",
                 "--spent", "uncounted=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "job job-abcd1234 'render' FAILED, ended 2026-05-01T10:30:00Z (0s before now)"
    assert lines[1] == "event JOB_FAILED; event vars: none; tags: team=ml; spent: uncounted=2"
    assert lines[2] == ("   1. nightly  RETRY           no     "
                        "job_name: 'render' matches none of ['nightly-*']")
    assert lines[3] == ("   2. oom      SKIP            no     "
                        "exit_code: failed instances exited with [143], none in {137}")
    assert lines[4] == "   3. spot     RETRY_UNCOUNTED MATCH"
    assert lines[5] == "decision: RETRY by rule 'spot': uncounted retry 3 of 10, due 2m after the failure"
    assert lines[6] == "  spends counter 'uncounted' (cap 10); fleet budget 100 per 10m"
    assert lines[7] == "details (DescribeJob/DescribeTask): needed"


def test_explain_marks_rules_after_the_winner(tmp_path: Path, files: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "oom.json"
    job.write_text(json.dumps(describe_job(code=137, reason="Spot reclaimed while OOM")))
    assert main(["explain", str(files[0]), "--job", str(job), "--now", "end"]) == 0
    out = capsys.readouterr().out
    assert "   2. oom      SKIP            MATCH\n" in out
    assert "   3. spot     RETRY_UNCOUNTED match  matches too, but an earlier rule won\n" in out
    assert "decision: SKIP by rule 'oom': out of memory\n" in out


def test_explain_reads_the_job_from_stdin_with_event_vars_and_overrides(
        files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(describe_job())))
    assert main(["explain", str(files[0]), "--job", "-", "--now", "end", "--event", "none",
                 "--var", "autoretry:disabled=true"]) == 0
    out = capsys.readouterr().out
    assert "event none (sweep); event vars: autoretry:disabled=true" in out
    assert "  override: event var autoretry:disabled='true' → SKIP\n" in out
    assert "   1. nightly  RETRY           -      not reached\n" in out
    assert "decision: SKIP by override: disabled_by_tag: event var autoretry:disabled='true'\n" in out
    assert out.endswith("details (DescribeJob/DescribeTask): not needed\n")


def test_explain_of_an_old_failure_says_too_old_and_how_to_look_anyway(
        files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(files[0]), "--job", str(files[1]), "--now", "2026-05-03T10:30:00Z"]) == 0
    out = capsys.readouterr().out
    assert "decision: SKIP by max_failure_age: too_old: failure ended 2d ago; limit 24h\n" in out
    assert "add --now end" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--job", "not-a-job"], "--job 'not-a-job': not a file, '-' (stdin), or a job id"),
    (["--job", "{job}", "--spent", "attempts"], "--spent 'attempts': expected NAME=VALUE"),
    (["--job", "{job}", "--spent", "attempts=two"], "expected a whole number"),
    (["--job", "{job}", "--now", "yesterday"], "--now 'yesterday': expected an ISO time"),
])
def test_explain_argument_errors_exit_2_with_a_message(files: tuple[Path, Path], args: list[str],
                                                       message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("{job}", str(files[1])) for a in args]
    assert main(["explain", str(files[0]), *args]) == 2  # usage errors, as argparse's own
    assert message in capsys.readouterr().err


def test_explain_of_a_file_that_is_not_a_describe_job_answer(
        tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "x.json"
    job.write_text('{"Response": {"JobName": "x"}}')
    assert main(["explain", str(files[0]), "--job", str(job)]) == 1
    assert "not a DescribeJob response: JobId: Field required" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["explain", "p.yaml"]) == 2  # --job is required
    assert "usage: python -m handler policy" in capsys.readouterr().err


def test_the_handler_command_dispatches_to_the_policy_cli(files: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert handler_main(["policy", "check", str(files[0])]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_policy_check_as_a_process_exits_1_on_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrulez: []\n")
    done = subprocess.run([sys.executable, "-m", "handler", "policy", "check", str(bad)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=60)
    assert done.returncode == 1
    assert "rulez: unknown field (did you mean 'rules'?)" in done.stderr


# ---- a job id is read through the Batch API with the function's own settings --------------------


class _BatchApi(BaseHTTPRequestHandler):
    answers: dict[str, dict[str, Any]] = {}
    queued: dict[str, list[dict[str, Any]]] = {}  # answers given once each, before `answers`
    calls: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        action = self.headers.get("X-TC-Action", "")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        self.calls.append((action, body))
        queued = self.queued.get(action)
        data = json.dumps(queued.pop(0) if queued else self.answers[action]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def batch_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_BatchApi]]:
    job = describe_job(code=137, reason="OOMKilled")["Response"]
    task = job["TaskSet"][0]
    _BatchApi.answers = {
        "DescribeJob": {"Response": {**job, "TaskSet": [{"TaskName": "main", "TaskState": "FAILED"}]}},
        "DescribeTask": {"Response": {"JobId": job["JobId"], **task, "RequestId": "r2"}},
    }
    _BatchApi.calls = []
    _BatchApi.queued = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BatchApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AUTORETRY_BATCH_ENDPOINT", f"127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AUTORETRY_BATCH_PROTOCOL", "http")
    monkeypatch.setenv("AUTORETRY_REGION", "ap-shanghai")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDtest")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "test-key")
    monkeypatch.delenv("TENCENTCLOUD_SECRETID", raising=False)
    yield _BatchApi
    server.shutdown()
    server.server_close()


def test_explain_by_job_id_reads_describe_job_and_describe_task(
        files: tuple[Path, Path], batch_api: type[_BatchApi], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(files[0]), "--job", "job-abcd1234", "--now", "end"]) == 0
    out = capsys.readouterr().out
    assert [a for a, _ in batch_api.calls] == ["DescribeJob", "DescribeTask"]
    assert batch_api.calls[1][1]["TaskName"] == "main"
    assert "decision: SKIP by rule 'oom': out of memory" in out


def test_explain_by_job_id_reports_an_api_error(files: tuple[Path, Path], batch_api: type[_BatchApi],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    batch_api.answers["DescribeJob"] = {"Response": {"Error": {"Code": "ResourceNotFound.Job",
                                                               "Message": "no such job"},
                                                     "RequestId": "r"}}
    assert main(["explain", str(files[0]), "--job", "job-abcd1234"]) == 1
    assert "DescribeJob job-abcd1234: ResourceNotFound.Job: no such job" in capsys.readouterr().err


def _spend_one(url: str, job_id: str, end_time: str, region: str = "ap-guangzhou") -> None:
    store = open_store(url)
    try:
        ledger = Ledger(store)
        key = FailureKey(region, job_id, end_time)
        ledger.claim(key, RetryDecision(Action.RETRY, "default", "retry 1 of 3"), 60.0)
        ledger.record_retried(key)
    finally:
        store.close()


def test_explain_reads_the_retries_spent_from_the_ledger(
        tmp_path: Path, ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\ndefault: {action: RETRY}\n")
    job = tmp_path / "job.json"
    job.write_text(json.dumps(describe_job()))
    assert main(["explain", str(p), "--job", str(job), "--now", "end"]) == 0
    out = capsys.readouterr().out
    assert f"spent: none (no ledger at {ledger_url}; set AUTORETRY_STORE or pass --spent)" in out
    assert "decision: RETRY by default: no rule matched: retry 1 of 3\n" in out
    _spend_one(ledger_url, "job-abcd1234", "2026-05-01T10:00:00Z")  # an earlier failure's retry
    assert main(["explain", str(p), "--job", str(job), "--now", "end"]) == 0
    out = capsys.readouterr().out
    assert f"spent: attempts=1 (from the ledger at {ledger_url})" in out
    assert "decision: RETRY by default: no rule matched: retry 2 of 3\n" in out


def test_explain_says_the_ledger_refuses_a_job_whose_budget_is_spent(
        tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\ndefault: {action: RETRY}\nlimits: {max_attempts: 1}\n")
    assert main(["explain", str(p), "--job", str(files[1]), "--now", "end", "--spent", "attempts=1"]) == 0
    out = capsys.readouterr().out
    assert "  the ledger refuses the claim: SKIP, max_attempts: the job's cap of 1 retries is spent\n" in out


def test_explain_flags_autoretry_tags_it_cannot_read(
        tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "tagged.json"
    job.write_text(json.dumps(describe_job(Tags=[
        {"Key": "autoretry:max-attempts", "Value": "lots"}, {"Key": "autoretry:disable", "Value": "true"},
        {"Key": "autoretry:disabled", "Value": "false"}, {"Key": "team", "Value": "ml"}])))
    assert main(["explain", str(files[0]), "--job", str(job), "--now", "end"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: cannot read tag autoretry:max-attempts='lots': expected a whole number from 0 to 100; "
        "it is ignored",
        "warning: cannot read tag autoretry:disable='true': unknown key; known: autoretry:disabled, "
        "autoretry:max-attempts, autoretry:policy-rule; it is ignored"]


def test_explain_warns_that_a_policy_without_tag_overrides_ignores_autoretry_tags(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\ndefault: {action: RETRY}\noverrides: {tags: false}\n")
    job = tmp_path / "tagged.json"
    job.write_text(json.dumps(describe_job(Tags=[{"Key": "autoretry:disabled", "Value": "true"}])))
    assert main(["explain", str(p), "--job", str(job), "--now", "end"]) == 0
    out = capsys.readouterr().out
    assert ("warning: tag autoretry:disabled='true' is not read: this policy sets overrides: "
            "{tags: false}") in out
    assert "decision: RETRY" in out


THROTTLED = {"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"},
                          "RequestId": "r"}}


def test_explain_by_job_id_waits_and_tries_again_when_throttled(
        files: tuple[Path, Path], batch_api: type[_BatchApi], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    slept: list[float] = []
    monkeypatch.setattr(policy_cli, "sleep", slept.append)
    batch_api.queued["DescribeJob"] = [THROTTLED, THROTTLED]
    assert main(["explain", str(files[0]), "--job", "job-abcd1234", "--now", "end"]) == 0
    assert slept == [1.0, 2.0]
    assert [a for a, _ in batch_api.calls] == ["DescribeJob"] * 3 + ["DescribeTask"]
    assert "decision: SKIP by rule 'oom': out of memory" in capsys.readouterr().out


def test_explain_by_job_id_gives_up_on_throttling_with_one_line(
        files: tuple[Path, Path], batch_api: type[_BatchApi], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(policy_cli, "sleep", lambda s: None)
    batch_api.queued["DescribeJob"] = [THROTTLED] * 10
    assert main(["explain", str(files[0]), "--job", "job-abcd1234"]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("error: DescribeJob job-abcd1234: the Batch API is throttling this account "
                            "(RequestLimitExceeded) after 4 tries; try again in a minute\n")
    assert captured.out == ""


def test_explain_by_job_id_reads_every_page_of_task_instances(
        files: tuple[Path, Path], batch_api: type[_BatchApi], capsys: pytest.CaptureFixture[str]) -> None:
    def page(offset: int, count: int) -> dict[str, Any]:
        instances = [{"TaskInstanceIndex": i, "TaskInstanceState": "SUCCEED", "ExitCode": 0}
                     for i in range(offset, offset + count)]
        if offset == 2000:  # the one failed instance is past the first 1,000
            instances[-1].update(TaskInstanceState="FAILED", ExitCode=137, StateReason="OOMKilled")
        return {"Response": {"JobId": "job-abcd1234", "TaskName": "main", "TaskState": "FAILED",
                             "TaskInstanceTotalCount": 2500, "TaskInstanceSet": instances,
                             "RequestId": "r"}}
    batch_api.queued["DescribeTask"] = [page(0, 1000), page(1000, 1000), page(2000, 500)]
    assert main(["explain", str(files[0]), "--job", "job-abcd1234", "--now", "end"]) == 0
    pages = [(b["Offset"], b["Limit"]) for a, b in batch_api.calls if a == "DescribeTask"]
    assert pages == [(0, 1000), (1000, 1000), (2000, 1000)]
    assert "decision: SKIP by rule 'oom': out of memory" in capsys.readouterr().out


def test_explain_of_a_failed_job_without_a_usable_end_time_says_the_function_skips_it(
        tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "bad.json"
    job.write_text(json.dumps(describe_job(EndTime="")))
    assert main(["explain", str(files[0]), "--job", str(job), "--spent", "attempts=0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("note: the job is FAILED with EndTime '', not a time: the function skips it "
                          "(bad_end_time).")
    assert "decision: " in out
