"""The alarms that ship with serverless.yml, packaged for real (osls, offline) with an SNS topic given
as a parameter: on both functions' errors, LedgerErrors, Throttles and budget_exhausted give-ups,
each watching a metric with exactly the dimensions the function writes."""

from __future__ import annotations

import io
import json
import os
import re
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
                ("AWS/Lambda", "Errors", fn("PullLambdaFunction")),
                (NAMESPACE, "LedgerErrors", [service]),
                (NAMESPACE, "Throttles", [service]),
                (NAMESPACE, "SkipsByReason", [service, {"Name": "reason", "Value": "budget_exhausted"}])]
    assert watched == {(ns, m, json.dumps(d, sort_keys=True)) for ns, m, d in expected}
    for name, a in alarms(template).items():
        assert a["Statistic"] == "Sum" and a["Threshold"] >= 1, name
        assert a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", name
        # The function writes every metric on every run; no data means no run, not trouble.
        assert a["TreatMissingData"] == "notBreaching", name
    for resource in ("EventsLambdaFunction", "SweepLambdaFunction", "PullLambdaFunction"):
        assert resource in template["Resources"]


def test_every_alarm_notifies_the_sns_topic_given_as_a_parameter(template: dict[str, Any]) -> None:
    # The deploy parameter is the stack parameter's default; CloudFormation decides the condition.
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == TOPIC
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    for name, a in alarms(template).items():
        for actions in ("AlarmActions", "OKActions"):
            assert a[actions] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                                             {"Ref": "AWS::NoValue"}]}, name


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


def _path(value: Any, path: str) -> Any:
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def test_the_scf_log_alarm_reads_fields_the_function_really_logs(capsys: pytest.CaptureFixture[str]) -> None:
    from handler.observe import Observer

    obs = Observer(platform="scf")
    obs.count("ledger.errors", 2)
    obs.count("api.throttled", 3)
    obs.decision(job="job-1", outcome="budget_exhausted", rule="default")
    capsys.readouterr()
    obs.flush_metrics()
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"metrics"' in x]
    alarm = json.loads((ROOT / "deploy" / "scf" / "cls-alarm.json").read_text())
    (target,) = alarm["AlarmTargets"]
    paths = re.findall(r"json_extract_scalar\(SCF_Message, '(\$[\w.]+)'\)", target["Query"])
    assert sorted(paths) == ["$.message", "$.metrics.LedgerErrors", "$.metrics.Throttles",
                             "$.skips_by_reason.budget_exhausted"]
    assert _path(line, "$.message") == "metrics"
    assert _path(line, "$.metrics.LedgerErrors") == 2
    assert _path(line, "$.metrics.Throttles") == 3
    assert _path(line, "$.skips_by_reason.budget_exhausted") == 1
    # The give-up messages it counts as lost are the notifier's own error lines.
    lost = re.search(r"IN \(([^)]*)\)", target["Query"])
    assert lost is not None
    notifier_source = (ROOT / "handler" / "notify" / "notifier.py").read_text()
    for message in re.findall(r"'([^']+)'", lost.group(1)):
        assert f'"{message}"' in notifier_source, message
    assert alarm["Condition"].count("> 0") == 4


def test_the_scf_cloud_monitor_policy_watches_errors_timeouts_and_throttles() -> None:
    policy = json.loads((ROOT / "deploy" / "scf" / "alarm-policy.json").read_text())
    assert policy["Namespace"] == "scf_v2" and policy["MonitorType"] == "MT_QCE"
    assert {r["MetricName"] for r in policy["Condition"]["Rules"]} == {"Error", "Http433", "Throttle"}
    binding = json.loads((ROOT / "deploy" / "scf" / "alarm-binding.json").read_text())
    (target,) = binding["Dimensions"]
    assert set(json.loads(target["Dimensions"])) == {"functionName", "namespace"}
