"""The alarms that ship with serverless.yml, packaged for real (osls, offline) with an SNS topic given
as a parameter: on both functions' errors, LedgerErrors, Throttles and budget_exhausted give-ups,
each watching a metric with exactly the dimensions the function writes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from handler.observe import NAMESPACE, _write_emf

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "arn:aws:sns:us-east-1:123456789012:batch-autoretry-ops"


def _package(out: Path, *params: str) -> dict[str, Any]:
    if shutil.which("npx") is None or shutil.which("node") is None:
        pytest.skip("node and npx are not installed: serverless.yml cannot be packaged here")
    if not (ROOT / "node_modules" / ".bin" / "osls").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, capture_output=True,
                       timeout=900)
    env = {**os.environ, "SLS_TELEMETRY_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off"}
    done = subprocess.run(["npx", "--no-install", "osls", "package", "--package", str(out),
                           *(f"--param={p}" for p in params)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, f"osls package failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads((out / "cloudformation-template-update-stack.json").read_text())
    return result


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _package(tmp_path_factory.mktemp("sls"), f"alarmTopicArn={TOPIC}")


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items()
            if v["Type"] == "AWS::CloudWatch::Alarm"}


def test_alarms_watch_function_errors_ledger_errors_throttles_and_budget_exhausted(
    template: dict[str, Any]
) -> None:
    watched = {(a["Namespace"], a["MetricName"], json.dumps(a["Dimensions"], sort_keys=True))
               for a in alarms(template).values()}
    service = {"Name": "service", "Value": "batch-autoretry"}

    def fn(resource: str) -> list[dict[str, Any]]:
        return [{"Name": "FunctionName", "Value": {"Ref": resource}}]

    expected = [("AWS/Lambda", "Errors", fn("EventsLambdaFunction")),
                ("AWS/Lambda", "Errors", fn("SweepLambdaFunction")),
                (NAMESPACE, "LedgerErrors", [service]),
                (NAMESPACE, "Throttles", [service]),
                (NAMESPACE, "SkipsByReason", [service, {"Name": "reason", "Value": "budget_exhausted"}])]
    assert watched == {(ns, m, json.dumps(d, sort_keys=True)) for ns, m, d in expected}
    for name, a in alarms(template).items():
        assert a["Statistic"] == "Sum" and a["Threshold"] >= 1, name
        assert a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", name
        # The function writes every metric on every run; no data means no run, not trouble.
        assert a["TreatMissingData"] == "notBreaching", name
    for resource in ("EventsLambdaFunction", "SweepLambdaFunction"):
        assert resource in template["Resources"]


def test_every_alarm_notifies_the_sns_topic_given_as_a_parameter(template: dict[str, Any]) -> None:
    assert template["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [TOPIC, ""]}]}
    for name, a in alarms(template).items():
        for actions in ("AlarmActions", "OKActions"):
            assert a[actions] == {"Fn::If": ["HasAlarmTopic", [TOPIC], {"Ref": "AWS::NoValue"}]}, name


def test_alarm_dimensions_are_exactly_those_the_function_writes() -> None:
    # CloudWatch matches an alarm to a metric only on the exact dimension set: read what the EMF
    # writer emits and compare with what the alarms in serverless.yml watch.
    out = io.StringIO()
    with redirect_stdout(out):
        _write_emf({"LedgerErrors": 1, "Throttles": 2, "Retries": 0}, {"budget_exhausted": 3})
    written: set[tuple[str, str, str]] = set()
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dims in directive["Dimensions"]:
                    pairs = sorted((d, str(record[d])) for d in dims)
                    written.add((directive["Namespace"], metric["Name"], json.dumps(pairs)))
    source = (ROOT / "serverless.yml").read_text()
    assert ("BatchAutoretry", "LedgerErrors", json.dumps([["service", "batch-autoretry"]])) in written
    assert ("BatchAutoretry", "Throttles", json.dumps([["service", "batch-autoretry"]])) in written
    assert ("BatchAutoretry", "SkipsByReason",
            json.dumps([["reason", "budget_exhausted"], ["service", "batch-autoretry"]])) in written
    assert "Dimensions: [{Name: service, Value: batch-autoretry}, {Name: reason, Value: budget_exhausted}]" \
        in source
