"""SCF 2018-04-16 in the emulator, through the real SDK's ScfClient: functions deployed from a zip
built here, run in processes of their own when Invoke asks, when a timer fires and when their
function URL is called; with SCF's codes for absent and duplicate functions and triggers and its
documented limits. Every answer deserialises into the SDK's response models with no field they do
not know (the SDK warns on one; this module makes that warning an error)."""

from __future__ import annotations

import base64
import calendar
import io
import itertools
import json
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import models, scf_client

from emulator import Emulator, Outcome
from emulator.scf_cron import Cron
from emulator.scf_runtime import interpreter_for

from .sdk import REGION, SECRET_ID, SECRET_KEY, refusal, typed

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("error::UserWarning")  # "... fileds are useless."

SPEEDUP = 60.0  # one emulator minute is one real second
ECHO = """
import json, os, time
VERSION = {version!r}
def main_handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    print("a line of the function's own log")
    answer = {{"version": VERSION, "event": event, "context": context,
               "env": {{k: v for k, v in os.environ.items()
                        if k.startswith(("AUTORETRY_", "SCF_", "TENCENTCLOUD_", "TRIGGER_", "GREETING"))}}}}
    if "httpMethod" in event:
        return {{"statusCode": 201, "headers": {{"X-Echo": "yes"}}, "body": json.dumps(answer)}}
    return answer
"""
TRUST = {"version": "2.0", "statement": [{"action": "name/sts:AssumeRole", "effect": "allow",
                                          "principal": {"service": ["scf.qcloud.com"]}}]}


def echo_zip(version: str = "v1") -> str:
    """A deployment package: index.py whose main_handler echoes its event, context and SCF's
    variables (base64, as Code.ZipFile takes it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("index.py", ECHO.format(version=version))
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=SPEEDUP) as e:
        yield e


def scf(emu: Emulator, action: str, secret: tuple[str, str] = (SECRET_ID, SECRET_KEY),
        **params: Any) -> Any:
    """The SDK's typed answer (`<Action>Response`) to `action`, sent by its own client."""
    return typed(emu, scf_client.ScfClient, models, action, params, secret)


def code(emu: Emulator, action: str, **params: Any) -> str:
    return refusal(lambda: scf(emu, action, **params), f"{action} {params}")


def create(emu: Emulator, name: str = "echo", *, role: str | None = None, timeout: int = 300,
           variables: dict[str, str] | None = None, active: bool = True, **extra: Any) -> None:
    params: dict[str, Any] = {"FunctionName": name, "Code": {"ZipFile": echo_zip()},
                              "Handler": "index.main_handler", "Runtime": "Python3.10",
                              "Timeout": timeout, "MemorySize": 256, "Namespace": "default", **extra}
    if variables:
        params["Environment"] = {"Variables": [{"Key": k, "Value": v} for k, v in variables.items()]}
    if role:
        params["Role"] = role
    scf(emu, "CreateFunction", **params)
    if active:
        wait_active(emu, name)


def wait_active(emu: Emulator, name: str, timeout: float = 5.0) -> Any:
    end = time.time() + timeout
    while (answer := scf(emu, "GetFunction", FunctionName=name)).Status != "Active":
        assert time.time() < end, f"{name} is still {answer.Status}"
        time.sleep(0.02)
    return answer


def invoke(emu: Emulator, name: str = "echo", event: dict[str, Any] | None = None) -> Any:
    return scf(emu, "Invoke", FunctionName=name, InvocationType="RequestResponse",
               ClientContext=json.dumps(event or {})).Result


def make_role(emu: Emulator, name: str = "autoretry-role") -> str:
    http = HttpProfile(endpoint=emu.endpoint, protocol="http", reqTimeout=5)
    cam = CommonClient("cam", "2019-01-16", credential.Credential(SECRET_ID, SECRET_KEY), REGION,
                       profile=ClientProfile(httpProfile=http))
    cam.call_json("CreateRole", {"RoleName": name, "PolicyDocument": json.dumps(TRUST)})
    return name


def timer(emu: Emulator, name: str, cron: str, argument: str, *, function: str = "echo",
          enable: str = "OPEN") -> Any:
    return scf(emu, "CreateTrigger", FunctionName=function, TriggerName=name, Type="timer",
               TriggerDesc=cron, Qualifier="$DEFAULT", Enable=enable, CustomArgument=argument,
               Namespace="default").TriggerInfo


URL_DESC = json.dumps({"AuthType": "NONE", "NetConfig": {"EnableIntranet": False, "EnableExtranet": True}})


# --- the function's life ---------------------------------------------------------------------------
def test_a_new_function_is_creating_then_active_and_get_function_describes_it(emu: Emulator) -> None:
    create(emu, variables={"GREETING": "hello"}, active=False, Description="echoes its event")
    first = scf(emu, "GetFunction", FunctionName="echo", Namespace="default")
    assert first.Status == "Creating"
    answer = wait_active(emu, "echo")
    assert (answer.FunctionName, answer.Handler, answer.Runtime, answer.Timeout, answer.MemorySize) == (
        "echo", "index.main_handler", "Python3.10", 300, 256)
    assert [(v.Key, v.Value) for v in answer.Environment.Variables] == [("GREETING", "hello")]
    assert answer.Description == "echoes its event" and answer.Namespace == "default"


def test_changes_are_refused_until_the_function_is_active_and_each_change_redeploys_it(
        emu: Emulator) -> None:
    create(emu, active=False)
    assert code(emu, "UpdateFunctionCode", FunctionName="echo", ZipFile=echo_zip("v2")) == \
        "FailedOperation.UpdateFunctionCode"
    assert code(emu, "Invoke", FunctionName="echo") == "FailedOperation.FunctionStatusError"
    wait_active(emu, "echo")
    scf(emu, "UpdateFunctionConfiguration", FunctionName="echo", Timeout=60)
    assert scf(emu, "GetFunction", FunctionName="echo").Status == "Updating"
    assert code(emu, "CreateTrigger", FunctionName="echo", TriggerName="t", Type="timer",
                TriggerDesc="0 * * * * * *") == "FailedOperation.CreateTrigger"
    assert wait_active(emu, "echo").Timeout == 60


def test_absent_functions_and_triggers_and_duplicates_get_scf_codes(emu: Emulator) -> None:
    for action in ("GetFunction", "DeleteFunction", "ListTriggers", "Invoke", "UpdateFunctionConfiguration"):
        assert code(emu, action, FunctionName="nobody") == "ResourceNotFound.Function", action
    create(emu)
    assert code(emu, "CreateFunction", FunctionName="echo", Code={"ZipFile": echo_zip()},
                Runtime="Python3.10") == "ResourceInUse.Function"
    timer(emu, "tick", "0 0 0 1 1 * *", "x")
    assert code(emu, "CreateTrigger", FunctionName="echo", TriggerName="tick", Type="timer",
                TriggerDesc="0 * * * * * *") == "ResourceInUse.Trigger"
    assert code(emu, "DeleteTrigger", FunctionName="echo", TriggerName="tock", Type="timer") == \
        "ResourceNotFound.Trigger"
    assert code(emu, "DeleteTrigger", FunctionName="echo", TriggerName="tick", Type="http") == \
        "ResourceNotFound.Trigger"
    assert code(emu, "GetFunction", FunctionName="echo", Namespace="team") == "ResourceNotFound.Namespace"


@pytest.mark.parametrize(("change", "expected"), [
    ({"FunctionName": "9lives"}, "InvalidParameterValue.FunctionName"),
    ({"FunctionName": "ends-with-"}, "InvalidParameterValue.FunctionName"),
    ({"FunctionName": "x" * 61}, "InvalidParameterValue.FunctionName"),
    ({"Runtime": "Python3.11"}, "InvalidParameterValue.Runtime"),
    ({"Handler": "index"}, "InvalidParameterValue.Handler"),
    ({"Handler": "index.main_handler_"}, "InvalidParameterValue.Handler"),
    ({"MemorySize": 200}, "InvalidParameterValue.MemorySize"),
    ({"MemorySize": 3200}, "LimitExceeded.Memory"),
    ({"Timeout": 901}, "LimitExceeded.Timeout"),
    ({"Timeout": 0}, "InvalidParameterValue"),
    ({"Code": {"ZipFile": base64.b64encode(b"not a zip").decode()}}, "InvalidParameterValue.ZipFile"),
    ({"Code": {"ZipFile": "!!"}}, "InvalidParameterValue.ZipFileBase64BinasciiError"),
    ({"Code": {}}, "MissingParameter.Code"),
    ({"Environment": {"Variables": [{"Key": "AUTORETRY_POLICY", "Value": "x" * 4096}]}},
     "InvalidParameterValue.EnvironmentExceededLimit"),
    ({"Environment": {"Variables": [{"Key": "TENCENTCLOUD_SECRETID", "Value": "AKID"}]}},
     "InvalidParameterValue.EnvironmentSystemProtect"),
    ({"Environment": {"Variables": [{"Key": "1BAD", "Value": "x"}]}}, "InvalidParameterValue.Environment"),
    ({"Description": "retries: failed jobs"}, "InvalidParameterValue.Description"),
    ({"Role": "no-such-role"}, "ResourceNotFound.Role"),
    ({"VpcConfig": {"VpcId": "vpc-12345678"}}, "InvalidParameterValue.Vpc"),
])
def test_create_function_refuses_what_scf_refuses(emu: Emulator, change: dict[str, Any],
                                                 expected: str) -> None:
    params = {"FunctionName": "echo", "Code": {"ZipFile": echo_zip()}, "Runtime": "Python3.10",
              "Handler": "index.main_handler", **change}
    assert code(emu, "CreateFunction", **params) == expected
    assert emu.scf.functions == {}


@pytest.mark.parametrize("cron", ["0 * * * * *", "61 * * * * * *", "0 * * * 13 * *", "a * * * * * *",
                                  "*/0 * * * * * *", "0 * * * * * 1969"])
def test_a_timer_whose_cron_scf_would_refuse_is_refused(emu: Emulator, cron: str) -> None:
    create(emu)
    assert code(emu, "CreateTrigger", FunctionName="echo", TriggerName="t", Type="timer",
                TriggerDesc=cron) == "InvalidParameterValue.TriggerDesc"


@pytest.mark.parametrize(("cron", "when", "fires"), [
    ("0 * * * * * *", "2026-12-07 16:05:00", True),
    ("0 * * * * * *", "2026-12-07 16:05:01", False),
    ("30 */15 * * * * *", "2026-12-07 16:45:30", True),
    ("30 */15 * * * * *", "2026-12-07 16:44:30", False),
    ("0 0 9-17 * * MON-FRI *", "2026-12-07 12:00:00", True),  # a Monday
    ("0 0 9-17 * * MON-FRI *", "2026-12-06 12:00:00", False),  # a Sunday
    ("0 0 0 1,15 JAN,DEC * 2026", "2026-12-15 00:00:00", True),
    ("0 0 0 1,15 JAN,DEC * 2026", "2026-11-15 00:00:00", False),
    ("0 0 0 25 12 0 *", "2026-12-06 00:00:00", True),  # day or weekday, as cron has it: a Sunday
    ("*/20 * * * *", "2026-12-07 16:40:00", True),  # five fields: minute hour day month weekday
    ("*/20 * * * *", "2026-12-07 16:41:00", False),
])
def test_timer_crons_match_the_times_scf_documents(cron: str, when: str, fires: bool) -> None:
    at = calendar.timegm(time.strptime(when, "%Y-%m-%d %H:%M:%S"))
    assert Cron.parse(cron).matches(at) is fires


# --- what runs ---------------------------------------------------------------------------------------
def test_invoke_runs_the_uploaded_zip_with_scf_variables_and_the_emulator_as_tencent(emu: Emulator) -> None:
    create(emu, variables={"GREETING": "hello", "AUTORETRY_TAG_ENDPOINT": "tag.example:443"})
    result = invoke(emu, event={"ping": 1})
    assert result.InvokeResult == 0 and result.ErrMsg == ""
    answer = json.loads(result.RetMsg)
    assert answer["version"] == "v1" and answer["event"] == {"ping": 1}
    env = answer["env"]
    assert env["GREETING"] == "hello"
    assert (env["TENCENTCLOUD_RUNENV"], env["SCF_FUNCTIONNAME"], env["SCF_FUNCTIONNAMESPACE"],
            env["TENCENTCLOUD_REGION"]) == ("SCF", "echo", "default", REGION)
    assert (env["AUTORETRY_BATCH_ENDPOINT"], env["AUTORETRY_BATCH_PROTOCOL"]) == (emu.endpoint, "http")
    assert (env["AUTORETRY_TDMQ_ENDPOINT"], env["AUTORETRY_QUEUE_ENDPOINT"]) == (emu.endpoint, emu.url)
    assert env["AUTORETRY_TAG_ENDPOINT"] == "tag.example:443"  # the function's own variable wins
    assert env["AUTORETRY_API_SPEEDUP"] == "60"
    assert "TENCENTCLOUD_SECRETID" not in env  # no role, no credentials
    context = answer["context"]
    assert (context["function_name"], context["namespace"], context["time_limit_in_ms"]) == (
        "echo", "default", 10000)  # Timeout 300 s at speedup 60 is 5 s, but a run has 10 s at least
    assert context["request_id"] == result.FunctionRequestId
    [record] = emu.scf.invocations("echo")
    assert record["trigger"] == "invoke:RequestResponse" and record["ok"]
    assert "a line of the function's own log" in record["stderr"]


@pytest.mark.parametrize(("timeout", "limit_ms"), [(900, 15000), (300, 10000), (2, 2000)])
def test_a_run_has_the_timeout_over_the_speedup_but_ten_real_seconds_at_least(
        emu: Emulator, timeout: int, limit_ms: int) -> None:
    create(emu, timeout=timeout)
    assert json.loads(invoke(emu).RetMsg)["context"]["time_limit_in_ms"] == limit_ms


def test_the_role_credentials_sign_calls_to_the_emulator_until_the_function_is_deleted(
        emu: Emulator) -> None:
    create(emu, role=make_role(emu))
    env = json.loads(invoke(emu).RetMsg)["env"]
    assert env["TENCENTCLOUD_SESSIONTOKEN"]
    keys = (env["TENCENTCLOUD_SECRETID"], env["TENCENTCLOUD_SECRETKEY"])
    assert scf(emu, "GetFunction", keys, FunctionName="echo").FunctionName == "echo"
    scf(emu, "DeleteFunction", FunctionName="echo")
    with pytest.raises(TencentCloudSDKException) as refused:
        scf(emu, "ListTriggers", keys, FunctionName="echo")
    assert refused.value.code == "AuthFailure.SecretIdNotFound"


def test_a_function_that_raises_or_outlives_its_timeout_fails_the_invocation(emu: Emulator) -> None:
    create(emu, timeout=2)  # under the 10 s a run has at least: the Timeout itself
    failed = invoke(emu, event={"fail": True})
    assert failed.InvokeResult == -1 and "RuntimeError: asked to fail" in failed.ErrMsg
    started = time.monotonic()
    slow = invoke(emu, event={"sleep": 5})
    assert time.monotonic() - started < 3
    assert slow.InvokeResult == -1 and "timed out" in slow.ErrMsg
    assert [r["timed_out"] for r in emu.scf.invocations("echo")] == [False, True]


def test_an_asynchronous_invocation_that_fails_is_tried_twice_more(emu: Emulator) -> None:
    create(emu)
    request_id = scf(emu, "Invoke", FunctionName="echo", InvocationType="Event",
                     ClientContext=json.dumps({"fail": True})).Result.FunctionRequestId
    attempts = emu.scf.wait_invocations("echo", 3, timeout=10)  # 1 and 2 emulator minutes apart
    assert [(a["request_id"], a["attempt"], a["ok"]) for a in attempts] == [
        (request_id, 1, False), (request_id, 2, False), (request_id, 3, False)]
    time.sleep(0.5)
    assert len(emu.scf.invocations("echo")) == 3


def test_update_function_code_changes_what_runs(emu: Emulator) -> None:
    create(emu)
    assert json.loads(invoke(emu).RetMsg)["version"] == "v1"
    scf(emu, "UpdateFunctionCode", FunctionName="echo", ZipFile=echo_zip("v2"), Handler="index.main_handler")
    wait_active(emu, "echo")
    assert json.loads(invoke(emu).RetMsg)["version"] == "v2"


# --- timers ---------------------------------------------------------------------------------------
def test_timers_fire_on_their_cron_in_emulator_time_with_the_timer_event(emu: Emulator) -> None:
    create(emu)
    info = timer(emu, "autoretry-pull", "0 * * * * * *", "pull")
    assert json.loads(info.TriggerDesc) == {"cron": "0 * * * * * *"} and info.Enable == 1
    timer(emu, "never", "0 0 0 1 1 * 2099", "x")
    timer(emu, "closed", "* * * * * * *", "x", enable="CLOSE")
    runs = emu.scf.wait_invocations("echo", 3, timeout=6)
    assert {r["trigger"] for r in runs} == {"timer:autoretry-pull"}
    events = [r["answer"]["event"] for r in runs]
    assert all(e["Type"] == "Timer" and e["TriggerName"] == "autoretry-pull" and e["Message"] == "pull"
               for e in events)
    assert all(e["Time"].endswith(":00Z") for e in events)  # second 0 of each emulator minute
    gaps = [b["started"] - a["started"] for a, b in itertools.pairwise(runs)]
    assert all(0.6 < g < 1.6 for g in gaps), gaps  # one emulator minute is one real second
    assert runs[0]["answer"]["env"]["TRIGGER_SRC"] == "timer"
    listed = scf(emu, "ListTriggers", FunctionName="echo", Namespace="default", Offset=0, Limit=20)
    assert listed.TotalCount == 3
    assert {t.TriggerName: t.Enable for t in listed.Triggers} == {
        "autoretry-pull": 1, "never": 1, "closed": 0}
    described = scf(emu, "GetFunction", FunctionName="echo").Triggers
    assert {t.TriggerName: json.loads(t.TriggerDesc)["cron"] for t in described} == {
        "autoretry-pull": "0 * * * * * *", "never": "0 0 0 1 1 * 2099", "closed": "* * * * * * *"}


def test_deleting_a_timer_or_the_function_stops_its_timer(emu: Emulator) -> None:
    create(emu)
    create(emu, "other")
    timer(emu, "every-minute", "0 * * * * * *", "a")
    timer(emu, "every-minute", "0 * * * * * *", "b", function="other")
    emu.scf.wait_invocations("echo", 1, timeout=3)
    emu.scf.wait_invocations("other", 1, timeout=3)
    scf(emu, "DeleteFunction", FunctionName="echo")
    scf(emu, "DeleteTrigger", FunctionName="other", TriggerName="every-minute", Type="timer")
    time.sleep(0.3)  # a firing already under way ends
    counts = len(emu.scf.invocations("echo")), len(emu.scf.invocations("other"))
    time.sleep(2.5)
    assert (len(emu.scf.invocations("echo")), len(emu.scf.invocations("other"))) == counts


# --- the function URL ---------------------------------------------------------------------------------
def test_the_function_url_reaches_the_function_and_its_answer_is_the_http_answer(emu: Emulator) -> None:
    create(emu)
    info = scf(emu, "CreateTrigger", FunctionName="echo", TriggerName="autoretry-url", Type="http",
               TriggerDesc=URL_DESC, Qualifier="$DEFAULT", Enable="OPEN").TriggerInfo
    assert "http" not in info.TriggerDesc  # by default the answer does not say where the URL is
    [url] = emu.function_urls()
    assert url.startswith(f"{emu.url}/scf-url/") and url.endswith("/")
    request = urllib.request.Request(f"{url}events?token=t1", data=b'{"msgBody": "x"}', method="POST",
                                     headers={"Content-Type": "text/plain", "X-Cmq-Message-Id": "m1"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        status, echo_header, body = answer.status, answer.headers["X-Echo"], json.loads(answer.read())
    assert (status, echo_header) == (201, "yes")
    event = body["event"]
    assert (event["httpMethod"], event["path"], event["queryString"], event["body"]) == (
        "POST", "/events", {"token": "t1"}, '{"msgBody": "x"}')
    assert event["isBase64Encoded"] is False
    headers = event["headers"]
    assert (headers["x-cmq-message-id"], headers["x-scf-remote-addr"]) == ("m1", "127.0.0.1")
    assert emu.scf.invocations("echo")[-1]["trigger"].startswith("url:")
    assert code(emu, "CreateTrigger", FunctionName="echo", TriggerName="second-url", Type="http",
                TriggerDesc=URL_DESC, Qualifier="$DEFAULT") == "ResourceInUse.Trigger"


def test_a_deleted_function_url_answers_404(emu: Emulator) -> None:
    create(emu)
    scf(emu, "CreateTrigger", FunctionName="echo", TriggerName="autoretry-url", Type="http",
        TriggerDesc=URL_DESC, Qualifier="$DEFAULT")
    [url] = emu.function_urls()
    scf(emu, "DeleteTrigger", FunctionName="echo", TriggerName="autoretry-url", Type="http")
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url, timeout=5)
    assert gone.value.code == 404 and emu.function_urls() == []


def test_with_url_in_answer_the_trigger_desc_names_the_function_url() -> None:
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=SPEEDUP, url_in_answer=True) as emu:
        create(emu)
        info = scf(emu, "CreateTrigger", FunctionName="echo", TriggerName="autoretry-url", Type="http",
                   TriggerDesc=URL_DESC, Qualifier="$DEFAULT").TriggerInfo
        [url] = emu.function_urls()
        assert json.loads(info.TriggerDesc)["Url"] == url
        [listed] = scf(emu, "ListTriggers", FunctionName="echo").Triggers
        assert json.loads(listed.TriggerDesc) == {**json.loads(URL_DESC), "Url": url}
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert json.loads(answer.read())["event"]["httpMethod"] == "GET"


# --- the real package ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The deployment zip deploy/scf/build.py builds (CPython 3.10 wheels), run by the emulator's
    SCF on a CPython 3.10 as SCF's Python3.10 runtime would. Base64, as Code.ZipFile takes it."""
    if interpreter_for("Python3.10") is None:
        pytest.skip("no CPython 3.10 here to play SCF's Python3.10 runtime")
    out = tmp_path_factory.mktemp("scf")
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "scf" / "build.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return base64.b64encode((out / "batch-autoretry-scf.zip").read_bytes()).decode()


def deploy_package(emu: Emulator, package: str, tmp_path: Path) -> None:
    """The function as `deploy scf` creates it: its role, its variables, Python3.10, 120 s."""
    variables = {"AUTORETRY_STORE": f"sqlite:///{tmp_path / 'ledger.db'}", "AUTORETRY_QUEUE": "notices",
                 "AUTORETRY_REGION": REGION, "AUTORETRY_QUEUE_NETWORK": "public",
                 "AUTORETRY_AUTH_TOKEN": "url-token"}
    scf(emu, "CreateFunction", FunctionName="batch-autoretry", Code={"ZipFile": package},
        Handler="index.main_handler", Runtime="Python3.10", Role=make_role(emu), Timeout=120,
        MemorySize=256, Environment={"Variables": [{"Key": k, "Value": v} for k, v in variables.items()]})
    wait_active(emu, "batch-autoretry")


def test_the_real_package_deployed_pulls_the_queue_on_its_timer_and_retries_the_failed_job(
        package: str, tmp_path: Path) -> None:
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=30.0) as emu:
        emu.cmq.create_queue("notices")
        emu.cmq.subscribe_queue("batch-events", "notices")
        job = emu.add_failed_job("render", [Outcome.succeed()])
        emu.publish(job, topic="batch-events")
        deploy_package(emu, package, tmp_path)
        timer(emu, "autoretry-pull", "0 * * * * * *", "pull", function="batch-autoretry")
        emu.wait_job(job, timeout=30, retries=1)
        runs = emu.scf.wait_invocations("batch-autoretry", 1, timeout=10)
        assert runs[0]["trigger"] == "timer:autoretry-pull" and runs[0]["ok"], runs[0]
        assert emu.cmq.depth("notices") == 0  # pulled and deleted with the role's credentials


def test_the_real_package_behind_its_function_url_retries_the_job_a_pushed_notice_names(
        package: str, tmp_path: Path) -> None:
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=30.0) as emu:
        job = emu.add_failed_job("render", [Outcome.succeed()])
        deploy_package(emu, package, tmp_path)
        scf(emu, "CreateTrigger", FunctionName="batch-autoretry", TriggerName="autoretry-url", Type="http",
            TriggerDesc=URL_DESC, Qualifier="$DEFAULT", Enable="OPEN")
        [url] = emu.function_urls()
        envelope = {"TopicOwner": 1250000000, "topicName": "batch-events", "subscriptionName": "autoretry",
                    "msgId": "m1", "msgBody": json.dumps(emu.notice(job)),
                    "publishTime": int(time.time() * 1000)}

        def push(token: str) -> tuple[int, dict[str, Any]]:
            request = urllib.request.Request(f"{url}events?token={token}", method="POST",
                                             data=json.dumps(envelope).encode(),
                                             headers={"Content-Type": "text/plain"})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read())

        assert push("wrong")[0] == 401  # the function's own answer, through the URL
        assert push("url-token") == (200, {"accepted": 1, "ignored": 0, "retried": [job], "message_id": "m1"})
        assert emu.job(job)["retries"] == 1


def test_a_continuation_started_inside_the_function_runs_it_again_in_the_emulator(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the function does under a burst: `Invoke` itself with `InvocationType=Event`, signed
    with its role's key, at the SCF API its environment names (the emulator's, here)."""
    from handler.continuation import CONTINUE_EVENT, for_invocation

    create(emu, role=make_role(emu))
    answer = json.loads(invoke(emu).RetMsg)
    for name, value in answer["env"].items():
        monkeypatch.setenv(name, value)
    continuation = for_invocation("scf", answer["context"])
    assert continuation is not None
    continuation.start()
    [again] = emu.scf.wait_invocations("echo", 1, trigger="invoke:Event")
    assert again["ok"] and again["answer"]["event"] == CONTINUE_EVENT, again
