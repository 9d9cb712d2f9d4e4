"""What operators see: one JSON line per decision, and metrics per invocation (EMF on Lambda)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.local import free_port as closed_port  # a loopback port nobody listens on
from handler.observe import METRICS, NAMESPACE, SKIPS_BY_REASON, Observer
from tests.core.fakes import FakeGateway

from .conftest import Deployed, LambdaContext, recent_end, scf_context

EVENTS = Path(__file__).resolve().parents[2] / "events"
ROOT = Path(__file__).resolve().parents[2]


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def emf_blobs(out: str) -> list[dict[str, Any]]:
    return [line for line in lines(out) if "_aws" in line]


def value(blob: dict[str, Any], name: str) -> float:
    """EMF allows a metric's value as a number or a list of samples (Powertools writes a list)."""
    v = blob[name]
    return float(sum(v)) if isinstance(v, list) else float(v)


def test_a_decision_is_exactly_one_json_line_with_its_facts(capsys: pytest.CaptureFixture[str]) -> None:
    Observer(correlation_id="6942316962").decision(
        job="job-abcd1234", region="ap-guangzhou",
        failure_key="ap-guangzhou/job-abcd1234/2026-11-24T10:00:00Z",
        action="RETRY", rule="default", reason="retry 1 of 3", outcome="retried")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    line = json.loads(out[0])
    assert line["message"] == "decision"
    assert line["correlation_id"] == "6942316962"
    for key in ("job", "failure_key", "reason", "outcome", "level", "timestamp", "service"):
        assert line[key], key


def test_every_line_carries_a_correlation_id_even_without_one(capsys: pytest.CaptureFixture[str]) -> None:
    Observer().info("hello")
    assert "correlation_id" in json.loads(capsys.readouterr().out)


def test_fields_named_like_credentials_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    Observer().warning("oops", auth_token="abc123", hmac_secret="def456", session_token="ghi",
                       job="job-abcd1234")
    line = json.loads(capsys.readouterr().out)
    assert line["auth_token"] == line["hmac_secret"] == line["session_token"] == "***"
    assert line["job"] == "job-abcd1234"


def test_push_decisions_are_logged_under_the_push_message_id(
    fake_batch: FakeGateway, function: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_batch.fail("job-a1b2c3d4", recent_end())
    event = json.loads((EVENTS / "scf-apigw-push-envelope.json").read_text())
    assert function.main_handler(event, scf_context())["statusCode"] == 200
    decisions = [line for line in lines(capsys.readouterr().out) if line["message"] == "decision"]
    assert len(decisions) == 1
    d = decisions[0]
    assert (d["job"], d["outcome"], d["correlation_id"]) == ("job-a1b2c3d4", "retried", "6942316962")
    assert d["failure_key"] and d["reason"]


def test_lambda_invocation_writes_emf_with_every_metric(
    fake_batch: FakeGateway, function: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_batch.fail("job-e5f6a7b8", recent_end())
    event = json.loads((EVENTS / "aws-httpapi-v2.json").read_text())
    assert function.lambda_handler(event, LambdaContext())["statusCode"] == 200
    blobs = emf_blobs(capsys.readouterr().out)
    assert len(blobs) == 1
    blob = blobs[0]
    directive = blob["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE
    names = {m["Name"] for m in directive["Metrics"]}
    assert names == set(METRICS.values())
    assert {"Notices", "Retries", "Skips", "Throttles", "LedgerErrors"} <= names
    assert [value(blob, n) for n in ("Notices", "Retries", "Skips", "Throttles")] == [1, 1, 0, 0]
    assert blob["service"] == "batch-autoretry"


def test_lambda_emf_counts_skips_by_reason(
    fake_batch: FakeGateway, function: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_batch.fail("job-a1b2c3d4", recent_end(), state="RUNNING")  # not failed any more
    event = json.loads((EVENTS / "scf-apigw-push-envelope.json").read_text())
    function.lambda_handler(event, LambdaContext())
    blobs = emf_blobs(capsys.readouterr().out)
    by_reason = [b for b in blobs if SKIPS_BY_REASON in b]
    assert [(b["reason"], value(b, SKIPS_BY_REASON)) for b in by_reason] == [("not_failed", 1)]
    assert sorted(by_reason[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == ["reason", "service"]
    main = next(b for b in blobs if "Skips" in b)
    assert value(main, "Skips") == 1


def test_lambda_counts_ledger_errors(
    function: Deployed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Redis ledger on a port nobody listens on: every call to it fails.
    monkeypatch.setenv("AUTORETRY_STORE", f"redis://127.0.0.1:{closed_port()}/0")
    event = json.loads((EVENTS / "aws-httpapi-v2.json").read_text())
    assert function.lambda_handler(event, LambdaContext())["statusCode"] == 503
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert value(blob, "LedgerErrors") == 1


def test_scf_invocation_writes_one_metrics_line_and_no_emf(
    fake_batch: FakeGateway, function: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_batch.fail("job-a1b2c3d4", recent_end())
    event = json.loads((EVENTS / "scf-apigw-push-envelope.json").read_text())
    function.main_handler(event, scf_context())
    out = capsys.readouterr().out
    assert emf_blobs(out) == []
    metrics = [line for line in lines(out) if line["message"] == "metrics"]
    assert len(metrics) == 1
    assert metrics[0]["metrics"]["Notices"] == 1
    assert metrics[0]["metrics"]["Retries"] == 1
    assert metrics[0]["correlation_id"] == "6942316962"


def test_importing_the_entry_module_does_not_import_powertools() -> None:
    # Powertools costs ~40 ms of import; SCF must never pay it, Lambda only when metrics flush.
    code = ("import sys, handler.app; "
            "print(sorted(m for m in sys.modules if m.startswith('aws_lambda_powertools')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_failure_to_write_metrics_does_not_change_the_answer(
    fake_batch: FakeGateway, function: Deployed, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from handler import observe

    def broken(values: dict[str, int], skip_reasons: dict[str, int]) -> None:
        raise ImportError("No module named 'aws_lambda_powertools'")

    monkeypatch.setattr(observe, "_write_emf", broken)
    fake_batch.fail("job-e5f6a7b8", recent_end())
    event = json.loads((EVENTS / "aws-httpapi-v2.json").read_text())
    assert function.lambda_handler(event, LambdaContext())["statusCode"] == 200
    assert any(line["message"] == "metrics not written" for line in lines(capsys.readouterr().out))
