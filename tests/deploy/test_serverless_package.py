"""serverless.yml packaged for real (`make package`: npm ci + osls package, no AWS access), then the
CloudFormation template and the zip checked; and every DynamoDB call the function makes, recorded
against moto, checked against the role's policy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import app
from tests.core.fakes import FakeGateway

from .conftest import Deployed, LambdaContext, recent_end

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".serverless"
EVENTS = ROOT / "events"
LEDGER_ACTIONS = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem",
                  "dynamodb:DeleteItem", "dynamodb:Query"}
# What each call needs from IAM. IAM has no action for a transaction itself: its parts are
# authorised as the single-item calls.
IAM_ACTION = {"GetItem": "dynamodb:GetItem", "BatchGetItem": "dynamodb:BatchGetItem",
              "PutItem": "dynamodb:PutItem", "DeleteItem": "dynamodb:DeleteItem",
              "UpdateItem": "dynamodb:UpdateItem", "Query": "dynamodb:Query", "Scan": "dynamodb:Scan",
              "Put": "dynamodb:PutItem", "Delete": "dynamodb:DeleteItem", "Update": "dynamodb:UpdateItem",
              "ConditionCheck": "dynamodb:ConditionCheckItem", "Get": "dynamodb:GetItem"}
TRANSACTIONS = {"TransactWriteItems", "TransactGetItems"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    if shutil.which("npx") is None or shutil.which("node") is None:
        pytest.skip("node and npx are not installed: serverless.yml cannot be packaged here")
    done = subprocess.run(["make", "package"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"make package failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads((OUT / "cloudformation-template-update-stack.json").read_text())
    return result


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources(template, "AWS::Lambda::Function").items()}


def test_every_function_runs_lambda_handler_on_python_3_11(template: dict[str, Any]) -> None:
    fns = functions(template)
    assert set(fns) == {"EventsLambdaFunction", "PullLambdaFunction", "SweepLambdaFunction"}
    for props in fns.values():
        assert props["Handler"] == "handler.app.lambda_handler"
        assert props["Runtime"] == "python3.11"
    assert fns["EventsLambdaFunction"]["Timeout"] < 30  # inside HTTP API's 30 s integration limit


def test_http_api_routes_post_events_to_the_events_function(template: dict[str, Any]) -> None:
    routes = resources(template, "AWS::ApiGatewayV2::Route")
    assert [r["Properties"]["RouteKey"] for r in routes.values()] == ["POST /events"]
    (integration,) = resources(template, "AWS::ApiGatewayV2::Integration").values()
    assert "EventsLambdaFunction" in json.dumps(integration["Properties"]["IntegrationUri"])


def test_queue_pull_and_the_sweep_each_run_every_minute(template: dict[str, Any]) -> None:
    rules = [(r["Properties"]["ScheduleExpression"], r["Properties"]["Targets"])
             for r in resources(template, "AWS::Events::Rule").values()]
    assert {expr for expr, _ in rules} == {"rate(1 minute)"}
    by_target = {json.dumps(t[0]["Arn"]): t[0] for _, t in rules}
    pull = by_target[json.dumps({"Fn::GetAtt": ["PullLambdaFunction", "Arn"]})]
    # A scheduled event of the usual shape, marked as the queue pull's tick.
    assert json.loads(pull["Input"]) == {"source": "aws.events", "detail-type": "Scheduled Event",
                                         "detail": {"autoretry": "pull"}}
    # The sweep's cursor finds a lost notice within 10 minutes only if it walks every minute.
    assert json.dumps({"Fn::GetAtt": ["SweepLambdaFunction", "Arn"]}) in by_target
    assert functions(template)["PullLambdaFunction"]["Timeout"] <= 60  # done before the next tick


def test_ledger_table_has_ttl_and_the_due_index(template: dict[str, Any]) -> None:
    table = template["Resources"]["LedgerTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"pk": "S", "gsi_pk": "S", "due_at": "N"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    (gsi,) = table["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "due-index"
    assert gsi["KeySchema"] == [{"AttributeName": "gsi_pk", "KeyType": "HASH"},
                                {"AttributeName": "due_at", "KeyType": "RANGE"}]


def test_environment_names_are_ones_the_function_reads(template: dict[str, Any]) -> None:
    config_source = "".join((ROOT / "handler" / name).read_text()
                            for name in ("config.py", "cmq.py", "secrets.py"))
    gateway_source = (ROOT / "handler" / "gateway.py").read_text()
    table = template["Resources"]["LedgerTable"]["Properties"]["TableName"]
    for props in functions(template).values():
        env = props["Environment"]["Variables"]
        assert env["AUTORETRY_STORE"] == f"dynamodb://{table}"
        for name in env:
            source = config_source if name.startswith("AUTORETRY_") else gateway_source
            assert f'"{name}"' in source, f"{name} is set but never read"
        # The token is a reference resolved by CloudFormation at deploy time, never a literal; the
        # Tencent key is not in the environment at all, only the name of its SecureString.
        assert re.fullmatch(r"\{\{resolve:ssm:/batch-autoretry/\w+/[\w-]+\}\}",
                            env["AUTORETRY_AUTH_TOKEN"])
        assert not {"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"} & set(env)
        assert env["AUTORETRY_TENCENT_KEY_PARAM"] == "/batch-autoretry/dev/tencent-key"
        assert env["AUTORETRY_QUEUE_NETWORK"] == "public" and env["AUTORETRY_QUEUE"]


def role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    role = template["Resources"]["IamRoleLambdaExecution"]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def test_role_may_read_the_one_parameter_holding_the_tencent_key(template: dict[str, Any]) -> None:
    (statement,) = [s for s in role_statements(template) if any("ssm:" in a for a in s["Action"])]
    assert statement["Action"] == ["ssm:GetParameter"]
    (arn,) = statement["Resource"]
    assert arn == {"Fn::Join": ["", ["arn:aws:ssm:", {"Ref": "AWS::Region"}, ":",
                                     {"Ref": "AWS::AccountId"}, ":parameter",
                                     "/batch-autoretry/dev/tencent-key"]]}
    assert not any(a.startswith(("secretsmanager:", "kms:")) or a == "ssm:*"
                   for s in role_statements(template) for a in s["Action"])


ALB = {"AlbSecurityGroup": "AWS::EC2::SecurityGroup",
       "AlbLoadBalancer": "AWS::ElasticLoadBalancingV2::LoadBalancer",
       "AlbInvokePermission": "AWS::Lambda::Permission",
       "AlbTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
       "AlbHttpListener": "AWS::ElasticLoadBalancingV2::Listener"}


def test_alb_with_an_http_listener_exists_only_under_its_condition_off_by_default(
    template: dict[str, Any]
) -> None:
    # Decided by CloudFormation from the stack's parameters, not written in as constants.
    assert template["Conditions"]["AlbHttp"] == {"Fn::And": [
        {"Fn::Equals": [{"Ref": "AlbHttp"}, "true"]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlbVpcId"}, ""]}]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlbSubnets"}, ""]}]}]}
    params = template["Parameters"]
    assert (params["AlbHttp"]["Default"], params["AlbVpcId"]["Default"],
            params["AlbSubnets"]["Default"]) == ("false", "", "")
    res = template["Resources"]
    assert {k: res[k]["Type"] for k in ALB} == ALB
    assert all(res[k]["Condition"] == "AlbHttp" for k in ALB)
    assert template["Outputs"]["AlbEventsUrl"]["Condition"] == "AlbHttp"
    listener = res["AlbHttpListener"]["Properties"]
    assert (listener["Protocol"], listener["Port"]) == ("HTTP", 80)
    assert res["AlbTargetGroup"]["Properties"]["TargetType"] == "lambda"
    assert res["AlbTargetGroup"]["Properties"]["Targets"] == [
        {"Id": {"Fn::GetAtt": ["EventsLambdaFunction", "Arn"]}}]
    assert res["AlbInvokePermission"]["Properties"]["Principal"] == "elasticloadbalancing.amazonaws.com"
    assert res["AlbSecurityGroup"]["Properties"]["VpcId"] == {"Ref": "AlbVpcId"}
    assert res["AlbLoadBalancer"]["Properties"]["Subnets"] == {"Fn::Split": [",", {"Ref": "AlbSubnets"}]}


def lint(template_file: Path) -> subprocess.CompletedProcess[str]:
    """cfn-lint, the one this virtualenv has (requirements-dev.txt), on a packaged template."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run([str(cfn_lint), str(template_file)], capture_output=True, text=True,
                          timeout=300)


def test_the_packaged_template_passes_cfn_lint(template: dict[str, Any]) -> None:
    done = lint(OUT / "cloudformation-template-update-stack.json")
    assert (done.returncode, done.stdout.strip()) == (0, ""), \
        f"cfn-lint found (exit {done.returncode}):\n{done.stdout}{done.stderr}"


def dynamodb_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in role_statements(template)
            if any(str(a).startswith("dynamodb:") for a in s["Action"])]


def test_role_grants_exactly_the_ledger_actions_on_the_table_and_its_index(
    template: dict[str, Any]
) -> None:
    (statement,) = dynamodb_statements(template)
    assert statement["Effect"] == "Allow"
    assert set(statement["Action"]) == LEDGER_ACTIONS
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["LedgerTable", "Arn"]},
        {"Fn::Join": ["/", [{"Fn::GetAtt": ["LedgerTable", "Arn"]}, "index", "due-index"]]},
    ]


def test_zip_holds_the_function_and_its_runtime_dependencies_only(template: dict[str, Any]) -> None:
    archive = OUT / "batch-autoretry.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "handler/app.py" in names and "handler/auth.py" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert {"pydantic", "pydantic_core", "tencentcloud", "aws_lambda_powertools", "yaml"} <= tops
    assert not tops & {"tests", "emulator", "bench", "docs", "node_modules", "events", "deploy",
                       ".venv", "boto3", "botocore", "redis", "moto"}
    assert any(re.search(r"pydantic_core/_pydantic_core\.cpython-311-x86_64-linux-gnu\.so$", n)
               for n in names)
    size = archive.stat().st_size
    print(f"Lambda package: {size / 1e6:.2f} MB, {len(names)} files")
    assert size < 50_000_000  # Lambda's direct-upload limit


@pytest.fixture
def recorded_calls(template: dict[str, Any], fake_batch: FakeGateway,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The function on a moto DynamoDB table built from the template, every call recorded."""
    import boto3
    from moto import mock_aws

    from handler.ledger import dynamodb

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    table = template["Resources"]["LedgerTable"]["Properties"]
    calls: set[str] = set()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name not in TRANSACTIONS:
            calls.add(IAM_ACTION.get(model.name, f"dynamodb:{model.name}"))
        for item in params.get("TransactItems", []):
            calls.update(IAM_ACTION[kind] for kind in item)

    def recording_client(region: str | None) -> Any:
        client = boto3.client("dynamodb", region_name=region or "us-east-1")
        client.meta.events.register("before-parameter-build.dynamodb", record)
        return client

    with mock_aws():
        setup = boto3.client("dynamodb", region_name="us-east-1")
        setup.create_table(**{k: table[k] for k in ("TableName", "BillingMode", "AttributeDefinitions",
                                                    "KeySchema", "GlobalSecondaryIndexes")})
        setup.update_time_to_live(TableName=table["TableName"],
                                  TimeToLiveSpecification=table["TimeToLiveSpecification"])
        monkeypatch.setattr(dynamodb, "_client", recording_client)
        monkeypatch.setenv("AUTORETRY_STORE", f"dynamodb://{table['TableName']}?region=us-east-1")
        app.reset_runtime()
        yield calls
        app.reset_runtime()


def test_every_dynamodb_call_the_function_makes_is_allowed_by_its_role(
    template: dict[str, Any], recorded_calls: set[str], fake_batch: FakeGateway, function: Deployed
) -> None:
    fake_batch.fail("job-e5f6a7b8", recent_end())
    fake_batch.fail("job-1b2c3d4e", recent_end())
    fake_batch.fail("job-2c3d4e5f", recent_end())
    fake_batch.fail("job-5weep001", recent_end())
    for sample in ("aws-httpapi-v2.json", "aws-httpapi-v2.json", "scf-cmq-records.json",
                   "aws-scheduled-event.json"):
        answer = function.lambda_handler(json.loads((EVENTS / sample).read_text()), LambdaContext())
        assert answer["statusCode"] == 200, answer
    assert sorted(j for batch in fake_batch.retried for j in batch) == [
        "job-1b2c3d4e", "job-2c3d4e5f", "job-5weep001", "job-e5f6a7b8"]
    (statement,) = dynamodb_statements(template)
    assert recorded_calls <= set(statement["Action"]), recorded_calls - set(statement["Action"])
    # And nothing more is granted than these deliveries, claims, the due queue and a sweep use.
    assert recorded_calls == set(statement["Action"])


# Last in the file: packaging again clears .serverless/, which the tests above read.
def test_alb_is_switched_on_by_a_deploy_parameter(template: dict[str, Any], tmp_path: Path) -> None:
    done = subprocess.run(
        ["npx", "--no-install", "osls", "package", "--package", str(tmp_path),
         "--param=albHttp=true", "--param=albVpcId=vpc-0123456789abcdef0",
         "--param=albSubnets=subnet-0123456789abcdef0,subnet-0123456789abcdef1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "SLS_TELEMETRY_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    on = json.loads((tmp_path / "cloudformation-template-update-stack.json").read_text())
    # The deploy parameters become the stack parameters' defaults; the condition stays CloudFormation's.
    params = on["Parameters"]
    assert (params["AlbHttp"]["Default"], params["AlbVpcId"]["Default"],
            params["AlbSubnets"]["Default"]) == (
        "true", "vpc-0123456789abcdef0", "subnet-0123456789abcdef0,subnet-0123456789abcdef1")
    assert on["Conditions"] == template["Conditions"]
    assert {k: on["Resources"][k] for k in ALB} == {k: template["Resources"][k] for k in ALB}
    linted = lint(tmp_path / "cloudformation-template-update-stack.json")
    assert (linted.returncode, linted.stdout.strip()) == (0, ""), linted.stdout + linted.stderr
