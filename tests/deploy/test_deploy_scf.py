"""`python -m handler deploy scf | teardown`: the documents it writes and how it tells a change,
in isolation; then the command, run in this process against the emulator's SCF, CAM and TDMQ
through the real SDK, with a small zip of its own (deploy/scf/build.py's zip is the docs test's)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from handler.__main__ import main as handler_main
from handler.deploy import cloud as deploy_cloud
from handler.deploy.documents import PLACEHOLDERS, TRUST_POLICY, role_policy, same_document
from handler.deploy.function import CODE_SHA256, Function, code_changed, configuration_changes
from handler.deploy.triggers import TIMERS, URL, trigger_changes, url_in
from handler.ledger import Ledger, open_store

from ..conftest import SECRET_ID, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
NAME, ROLE = "batch-autoretry", "BatchAutoretry-batch-autoretry"
CHANGES = ("Create", "Update", "Attach", "Detach", "Delete", "Put", "Set")
TOKEN = "tok-9f8e7d6c5b4a39281706"
PASSWORD = "s3cret-ledger-pw"


# --- the documents -------------------------------------------------------------------------------
def test_the_role_may_call_only_what_the_function_calls_on_its_own_queue_and_function() -> None:
    policy = role_policy("ap-shanghai", "200000000002", "jobs-q", "fn-a")
    batch, queue, invoke = policy["statement"]
    assert policy["version"] == "2.0"
    assert all(s["effect"] == "allow" for s in policy["statement"])
    assert set(batch["action"]) == {"name/batch:RetryJobs", "name/batch:DescribeJob",
                                    "name/batch:DescribeJobs", "name/batch:DescribeTask"}
    assert batch["resource"] == ["*"]
    assert set(queue["action"]) == {"name/tdmq:BatchReceiveMessage", "name/tdmq:BatchDeleteMessage"}
    assert queue["resource"] == ["qcs::tdmq:ap-shanghai:uin/200000000002:queue/jobs-q"]
    # CAM's name for the Invoke API is scf:InvokeFunction (docs 583/38177, 583/18014).
    assert invoke["action"] == ["name/scf:InvokeFunction"]
    assert invoke["resource"] == ["qcs::scf:ap-shanghai:uin/200000000002:namespace/default/function/fn-a"]


def test_tag_resources_is_granted_only_to_a_function_that_tags_jobs() -> None:
    without = role_policy("ap-guangzhou", "1", "q", "f")
    tagging = role_policy("ap-guangzhou", "1", "q", "f", tag_jobs=True)
    assert not any("tag:" in a for s in without["statement"] for a in s["action"])
    assert tagging["statement"][:3] == without["statement"]
    assert tagging["statement"][3] == {"effect": "allow", "action": ["name/tag:TagResources"],
                                       "resource": ["*"]}


def test_cam_policy_json_is_the_policy_deploy_writes_with_placeholders() -> None:
    on_disk = json.loads((ROOT / "deploy" / "scf" / "cam-policy.json").read_text())
    assert on_disk == role_policy(**PLACEHOLDERS)


def test_only_the_scf_service_may_assume_the_role() -> None:
    (statement,) = TRUST_POLICY["statement"]
    assert statement == {"action": "name/sts:AssumeRole", "effect": "allow",
                         "principal": {"service": ["scf.qcloud.com"]}}


def test_a_document_cam_spells_otherwise_is_the_same_document_and_another_is_not() -> None:
    wanted = role_policy("ap-guangzhou", "1", "q", "f")
    respelled = {"statement": [dict(reversed(list(s.items()))) for s in reversed(wanted["statement"])],
                 "version": "2.0"}
    respelled["statement"][0]["action"] = respelled["statement"][0]["action"][0]  # a lone string
    assert same_document(json.dumps(respelled), wanted)
    assert same_document(urllib.parse.quote(json.dumps(wanted)), wanted)
    other = role_policy("ap-guangzhou", "1", "another-queue", "f")
    assert not same_document(json.dumps(other), wanted)
    assert not same_document("not json", wanted) and not same_document(None, wanted)


# --- telling a change ------------------------------------------------------------------------------
def function(code: bytes = b"zip", **settings: Any) -> Function:
    environment = {"AUTORETRY_STORE": f"redis://:{PASSWORD}@10.0.0.12:6379/0",
                   "AUTORETRY_QUEUE": "q", "AUTORETRY_AUTH_TOKEN": TOKEN}
    return Function(NAME, ROLE, code, environment, **settings)


def as_found(fn: Function, **changed: Any) -> dict[str, Any]:
    """What GetFunction answers for a function deployed as `fn`, with `changed` fields."""
    answer = {"Handler": "index.main_handler", "Runtime": "Python3.10", "Status": "Active",
              "VpcConfig": {"VpcId": "", "SubnetId": ""}, "PublicNetConfig": {"PublicNetStatus": "ENABLE"},
              **{k: v for k, v in fn.configuration().items() if k != "VpcConfig"}}
    answer.update(changed)
    return answer


def test_a_function_as_deployed_has_no_change() -> None:
    fn = function()
    assert configuration_changes(as_found(fn), fn) == (False, [])
    assert not code_changed(as_found(fn), fn)


def test_changes_name_fields_and_values_but_of_variables_only_their_names() -> None:
    fn, old = function(memory=512), function(b"old zip")
    old_env = {"Variables": [{"Key": k, "Value": "other-" + v}
                             for k, v in old.variables().items()]}
    needed, said = configuration_changes(as_found(old, MemorySize=256, Environment=old_env), fn)
    assert needed
    assert said[0] == "MemorySize: 256 → 512"
    assert said[1] == "Environment: AUTORETRY_AUTH_TOKEN, AUTORETRY_CODE_SHA256, AUTORETRY_QUEUE, " \
                      "AUTORETRY_STORE"
    assert not any(TOKEN in s or PASSWORD in s for s in said)


def test_new_code_is_told_by_its_digest_and_the_digest_is_not_named_beside_it() -> None:
    old, new = function(b"old zip"), function(b"new zip")
    found = as_found(old)
    assert code_changed(found, new) and not code_changed(found, old)
    assert configuration_changes(found, new, hide=frozenset({CODE_SHA256})) == (True, [])
    assert new.variables()[CODE_SHA256] == hashlib.sha256(b"new zip").hexdigest()


def test_variables_set_in_the_console_are_kept() -> None:
    fn = Function(NAME, ROLE, b"zip", {"AUTORETRY_QUEUE": "q"}, kept={"AUTORETRY_HMAC_SECRET": "h"})
    assert fn.variables()["AUTORETRY_HMAC_SECRET"] == "h"


def test_a_timer_listed_as_cron_json_is_unchanged_and_another_argument_is_a_change() -> None:
    pull = TIMERS[0]
    listed = {"TriggerName": pull.name, "Type": "timer", "TriggerDesc": json.dumps({"cron": pull.desc}),
              "CustomArgument": "pull", "Enable": 1}
    assert trigger_changes(listed, pull) == []
    assert trigger_changes(listed | {"CustomArgument": "sweep"}, pull) == ["CustomArgument"]
    assert trigger_changes(listed | {"TriggerDesc": "0 */5 * * * * *"}, pull) == ["TriggerDesc"]
    assert trigger_changes(listed | {"Enable": 0}, pull) == ["Enable"]
    with_url = json.dumps({**json.loads(URL.desc), "Url": "https://1250000000-abc.ap-guangzhou.tencentscf.com"})
    assert trigger_changes({"Type": "http", "TriggerDesc": with_url, "Enable": 1}, URL) == []
    assert url_in(with_url) == "https://1250000000-abc.ap-guangzhou.tencentscf.com"
    assert url_in(URL.desc) is None


def test_printed_calls_show_no_secret() -> None:
    params = function().create_params()
    text = deploy_cloud.shown(params)
    assert TOKEN not in text and PASSWORD not in text
    assert params["Code"]["ZipFile"] not in text
    shown = {v["Key"]: v["Value"] for v in json.loads(text)["Environment"]["Variables"]}
    assert shown["AUTORETRY_STORE"] == "redis://***@10.0.0.12:6379/0"
    assert shown["AUTORETRY_AUTH_TOKEN"] == "***" and shown["AUTORETRY_QUEUE"] == "q"


def test_a_field_the_sdk_model_does_not_have_fails_before_any_call() -> None:
    with pytest.raises(TypeError, match="FunctionNam"):
        deploy_cloud.Cloud._request("scf", "GetFunction", {"FunctionNam": NAME})
    with pytest.raises(TypeError, match="RoleNme"):
        deploy_cloud.Cloud._request("cam", "GetRole", {"RoleNme": ROLE})


# --- the command -----------------------------------------------------------------------------------
def point_at(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The deployer's shell: the emulator's key, every API call to the emulator."""
    for name in list(os.environ):
        if name.startswith(("AUTORETRY_", "TENCENTCLOUD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AUTORETRY_DEPLOY_ENDPOINT", emu.endpoint)
    monkeypatch.setenv("AUTORETRY_DEPLOY_PROTOCOL", "http")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    return emu


@pytest.fixture
def deployer(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    return point_at(emu, monkeypatch)


def small_zip(path: Path, answer: str = "ok") -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        source = f"def main_handler(event, context):\n    return {{'statusCode': 200, 'body': {answer!r}}}\n"
        z.writestr(zipfile.ZipInfo("index.py", (2020, 1, 1, 0, 0, 0)), source)
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.fixture
def package(tmp_path: Path) -> str:
    return small_zip(tmp_path / "fn.zip")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = handler_main(["deploy", *argv])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def changes(emu: Emulator, since: int = 0) -> list[str]:
    return [c["action"] for c in emu.calls[since:] if c["action"].startswith(CHANGES)]


def lines(out: str) -> dict[str, str]:
    """'kind name: outcome' lines by 'kind name'."""
    found = {}
    for line in out.splitlines():
        head, sep, outcome = line.partition(": ")
        if sep and len(head.split()) == 2:
            found[head] = outcome
    return found


def deployed(emu: Emulator) -> Any:
    return emu.scf.functions[("default", NAME)]


def ledger_identity(store: str) -> str | None:
    opened = open_store(store)
    try:
        return Ledger(opened).identity()
    finally:
        opened.close()


def test_deploy_makes_the_role_policy_function_timers_and_wiring(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    code, out, err = run("scf", "--store", store, "--package", package)
    assert code == 0, err
    said = lines(out)
    for step in (f"role {ROLE}", f"function {NAME}", "trigger autoretry-pull", "trigger autoretry-sweep",
                 "topic batch-events", "queue batch-autoretry", "queue batch-autoretry-dead-letters",
                 "subscription batch-autoretry"):
        assert said[step].startswith("created"), (step, out)
    role = emu.cam.role(ROLE)
    assert role is not None and same_document(role.document, TRUST_POLICY)
    policy = emu.cam.policy_named(ROLE)
    assert policy is not None
    assert json.loads(policy.document) == role_policy(emu.region, emu.uin, "batch-autoretry", NAME)
    assert emu.cam.attached(ROLE) == [ROLE]

    fn = deployed(emu)
    assert (fn.handler, fn.runtime, fn.role, fn.memory, fn.timeout) == (
        "index.main_handler", "Python3.10", ROLE, 256, 120)
    identity = ledger_identity(store)
    assert identity is not None and f"identity {identity}" in out
    assert fn.env == {"AUTORETRY_STORE": store, "AUTORETRY_REGION": emu.region,
                      "AUTORETRY_QUEUE": "batch-autoretry", "AUTORETRY_LEDGER_ID": identity,
                      "AUTORETRY_QUEUE_NETWORK": "public",
                      "AUTORETRY_CODE_SHA256": hashlib.sha256(Path(package).read_bytes()).hexdigest()}
    timers = {t.name: (t.cron.text if t.cron else None, t.custom_argument, t.enabled)
              for t in fn.triggers.values()}
    assert timers == {"autoretry-pull": ("0 * * * * * *", "pull", True),
                      "autoretry-sweep": ("30 * * * * * *", "sweep", True)}
    assert set(emu.cmq.queues) == {"batch-autoretry", "batch-autoretry-dead-letters"}
    assert emu.cmq.queues["batch-autoretry"].dead_letter_queue == "batch-autoretry-dead-letters"
    assert ("batch-events", "batch-autoretry") in emu.cmq.subscriptions
    assert '"NotificationTarget": "TDMQ_CMQ"' in out  # the block to add to SubmitJob

    # The deployed zip runs on its pull timer (an emulator minute is 3 s here).
    (tick, *_) = emu.scf.wait_invocations(NAME, 1, timeout=20, trigger="timer:autoretry-pull")
    assert tick["ok"] and tick["answer"] == {"statusCode": 200, "body": "ok"}


def test_a_second_deploy_is_up_to_date_and_changes_nothing(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package, "--function-url")[0] == 0
    before = len(emu.calls)
    code, out, err = run("scf", "--store", store, "--package", package, "--function-url")
    assert code == 0, err
    assert changes(emu, before) == []
    said = lines(out)
    for step in (f"role {ROLE}", f"function {NAME}", "trigger autoretry-pull", "trigger autoretry-sweep",
                 "trigger autoretry-url", "topic batch-events", "queue batch-autoretry",
                 "queue batch-autoretry-dead-letters", "subscription batch-autoretry"):
        assert said[step].startswith("up to date"), (step, out)
    assert "initialised" not in out  # the ledger keeps its identity


def test_a_changed_setting_is_one_configuration_update_in_place(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package)[0] == 0
    function_id, before = deployed(emu).function_id, len(emu.calls)
    code, out, err = run("scf", "--store", store, "--package", package, "--memory", "512",
                         "--queue", "other-queue")
    assert code == 0, err
    assert changes(emu, before).count("UpdateFunctionConfiguration") == 1
    assert "UpdateFunctionCode" not in changes(emu, before)
    assert "CreateFunction" not in changes(emu, before) and deployed(emu).function_id == function_id
    assert lines(out)[f"function {NAME}"] == \
        "configuration updated (MemorySize: 256 → 512; Environment: AUTORETRY_QUEUE)"
    # The queue is in the role's policy too: updated in place.
    assert lines(out)[f"role {ROLE}"] == "updated (PolicyDocument)"
    assert changes(emu, before).count("UpdatePolicy") == 1
    fn = deployed(emu)
    assert (fn.memory, fn.env["AUTORETRY_QUEUE"]) == (512, "other-queue")


def test_a_changed_zip_is_one_code_update(
        deployer: Emulator, run: Run, package: str, store: str, tmp_path: Path) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package)[0] == 0
    before = len(emu.calls)
    newer = small_zip(tmp_path / "newer.zip", answer="newer")
    code, out, err = run("scf", "--store", store, "--package", newer)
    assert code == 0, err
    assert changes(emu, before).count("UpdateFunctionCode") == 1
    assert lines(out)[f"function {NAME}"] == "code updated"
    assert deployed(emu).env[CODE_SHA256] == hashlib.sha256(Path(newer).read_bytes()).hexdigest()
    assert (deployed(emu).code_dir / "index.py").read_text().count("newer") == 1


def test_dry_run_prints_every_call_and_changes_nothing(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    code, out, err = run("scf", "--store", store, "--package", package, "--dry-run")
    assert code == 0, err
    assert changes(emu) == []
    assert emu.scf.functions == {} and emu.cam.roles == {} and emu.cmq.queues == {}
    for action in ("CreateRole", "CreatePolicy", "AttachRolePolicy", "CreateFunction", "CreateCmqTopic",
                   "CreateCmqQueue", "CreateCmqSubscribe"):
        assert f"would call {action} " in out, action
    assert out.count("would call CreateTrigger ") == 2
    assert "called GetFunction " in out and "called GetUserAppId " in out
    assert not Path(store.removeprefix("sqlite:///")).exists()  # not even an empty ledger made
    # On a deployment, a dry run of a change says what it would do, and does not.
    assert run("scf", "--store", store, "--package", package)[0] == 0
    before = len(emu.calls)
    code, out, err = run("scf", "--store", store, "--package", package, "--timeout", "60", "--dry-run")
    assert code == 0, err
    assert changes(emu, before) == [] and deployed(emu).timeout == 120
    assert lines(out)[f"function {NAME}"] == "configuration would be updated (Timeout: 120 → 60)"
    assert "would call UpdateFunctionConfiguration " in out


def test_no_secret_is_printed_by_a_deploy_or_its_dry_run(
        deployer: Emulator, run: Run, package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store in a VPC, out of reach from here: its identity is given (--ledger-id), so it is
    # never opened.
    with_password = f"redis://:{PASSWORD}@10.0.0.12:6379/0"
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", TOKEN)
    for extra in (["--dry-run"], []):
        code, out, err = run("scf", "--store", with_password, "--ledger-id", "a1b2c3", "--package",
                             package, "--function-url", "--vpc-id", "vpc-abcd1234", "--subnet-id",
                             "subnet-abcd1234", *extra)
        assert code == 0, err
        assert "Environment" in out or not extra  # the dry run printed the function's variables
        assert PASSWORD not in out + err and TOKEN not in out + err
    fn = deployed(deployer)
    assert (fn.env["AUTORETRY_AUTH_TOKEN"], fn.env["AUTORETRY_STORE"]) == (TOKEN, with_password)
    assert fn.env["AUTORETRY_QUEUE_NETWORK"] == "vpc"
    assert fn.vpc == {"VpcId": "vpc-abcd1234", "SubnetId": "subnet-abcd1234"}


def test_a_function_url_gets_a_token_kept_across_deploys_and_goes_when_not_asked(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    code, out, err = run("scf", "--store", store, "--package", package, "--function-url")
    assert code == 0, err
    token = deployed(emu).env["AUTORETRY_AUTH_TOKEN"]
    assert len(token) >= 32 and token not in out
    assert "AUTORETRY_AUTH_TOKEN: generated" in out
    assert "function URL created; find its address in the SCF console (Function URL) — " \
           f"https://1300000001-<id>.{emu.region}.tencentscf.com" in out or "function URL: http" in out
    assert len(emu.scf.function_urls()) == 1
    assert run("scf", "--store", store, "--package", package, "--function-url")[0] == 0
    assert deployed(emu).env["AUTORETRY_AUTH_TOKEN"] == token
    code, out, err = run("scf", "--store", store, "--package", package)
    assert code == 0, err
    assert lines(out)["trigger autoretry-url"] == "deleted (not asked for)"
    assert emu.scf.function_urls() == [] and "AUTORETRY_AUTH_TOKEN" not in deployed(emu).env


def test_the_function_url_is_printed_when_the_api_gives_it(
        monkeypatch: pytest.MonkeyPatch, run: Run, package: str, store: str) -> None:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0, url_in_answer=True) as emu:
        point_at(emu, monkeypatch)
        code, out, err = run("scf", "--store", store, "--package", package, "--function-url")
        assert code == 0, err
        (url,) = emu.scf.function_urls()
        assert f"function URL: {url}" in out


def test_tag_jobs_gives_the_function_the_account_and_the_role_tag_resources(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    code, _out, err = run("scf", "--store", store, "--package", package, "--tag-jobs")
    assert code == 0, err
    assert deployed(emu).env["AUTORETRY_ACCOUNT_UIN"] == emu.uin
    policy = emu.cam.policy_named(ROLE)
    assert policy is not None and "name/tag:TagResources" in policy.document


def test_a_ledger_that_forgot_is_refused_and_an_identity_given_is_used(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package)[0] == 0
    identity = deployed(emu).env["AUTORETRY_LEDGER_ID"]
    Path(store.removeprefix("sqlite:///")).unlink()  # the store loses everything
    before = len(emu.calls)
    code, _out, err = run("scf", "--store", store, "--package", package)
    assert code == 1
    assert err.count("\n") == 1 and f"AUTORETRY_LEDGER_ID={identity}: it forgot" in err
    assert "ledger init --adopt" in err
    assert changes(emu, before) == [] and deployed(emu).env["AUTORETRY_LEDGER_ID"] == identity
    code, _out, err = run("scf", "--store", store, "--package", package, "--ledger-id", "0f1e2d3c")
    assert code == 0, err
    assert deployed(emu).env["AUTORETRY_LEDGER_ID"] == "0f1e2d3c"


def test_teardown_leaves_nothing_and_a_second_changes_nothing(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package, "--function-url")[0] == 0
    before = len(emu.calls)
    code, out, err = run("teardown", "--dry-run")
    assert code == 0, err
    assert changes(emu, before) == [] and emu.scf.functions
    assert "would call DeleteFunction " in out and "would call DeleteRole " in out
    code, out, err = run("teardown")
    assert code == 0, err
    assert emu.scf.functions == {} and emu.cam.roles == {} and emu.cam.policies == {}
    assert emu.cmq.queues == {} and emu.cmq.topic_names == {} and emu.cmq.subscriptions == {}
    said = lines(out)
    for step in ("trigger autoretry-pull", "trigger autoretry-url", f"function {NAME}",
                 f"policy {ROLE}", f"role {ROLE}", "queue batch-autoretry", "topic batch-events"):
        assert said[step] == "deleted", (step, out)
    assert ledger_identity(store) is not None  # the ledger's data stays
    before = len(emu.calls)
    code, out, err = run("teardown")
    assert code == 0, err
    assert changes(emu, before) == []
    assert set(lines(out).values()) == {"already gone"}, out


@pytest.mark.parametrize("absent_code", ["ResourceNotFound", "FailedOperation"])
def test_a_second_teardown_takes_either_code_of_a_missing_queue_as_gone(
        deployer: Emulator, run: Run, package: str, store: str, absent_code: str) -> None:
    """TDMQ's SDKs list FailedOperation beside ResourceNotFound for a missing queue's details:
    deploy reads that answer as wire does."""
    deployer.behaviour.absent_queue_code = absent_code
    assert run("scf", "--store", store, "--package", package)[0] == 0
    assert run("teardown")[0] == 0
    code, out, err = run("teardown")
    assert code == 0, err
    assert lines(out)["queue batch-autoretry"] == "already gone", out


def test_teardown_deletes_a_topic_others_subscribe_to_and_says_so(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package)[0] == 0
    assert handler_main(["wire", "--http", "http://127.0.0.1:9/events", "--subscription", "push",
                         "--endpoint", emu.endpoint, "--protocol", "http"]) == 0
    code, out, err = run("teardown")
    assert code == 0, err
    assert lines(out)["topic batch-events"] == "deleted (and 1 other subscription on it)"
    assert emu.cmq.topic_names == {} and emu.cmq.subscriptions == {}


def test_teardown_keeps_the_wiring_when_asked(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    emu = deployer
    assert run("scf", "--store", store, "--package", package)[0] == 0
    code, _out, err = run("teardown", "--keep-wiring")
    assert code == 0, err
    assert emu.scf.functions == {} and emu.cam.roles == {}
    assert set(emu.cmq.queues) == {"batch-autoretry", "batch-autoretry-dead-letters"}
    assert ("batch-events", "batch-autoretry") in emu.cmq.subscriptions


# --- what the command refuses --------------------------------------------------------------------
@pytest.fixture
def no_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No endpoint and no key: a usage error is found before either is needed."""
    for name in list(os.environ):
        if name.startswith(("AUTORETRY_", "TENCENTCLOUD_")):
            monkeypatch.delenv(name)
    yield


@pytest.mark.parametrize(("argv", "says"), [
    (["scf"], "--store: the ledger the function uses is needed"),
    (["scf", "--store", "sqlite:///var/x.db"], "a relative SQLite path"),
    (["scf", "--store", "redis://h:6379/0", "--memory", "100"], "--memory 100: expected 64, or 128"),
    (["scf", "--store", "redis://h:6379/0", "--timeout", "901"], "--timeout 901: expected 1 to 900"),
    (["scf", "--store", "redis://h:6379/0", "--vpc-id", "vpc-abcd1234"], "--vpc-id and --subnet-id"),
    (["scf", "--store", "redis://h:6379/0", "--name", "9lives"], "--name '9lives'"),
    (["teardown", "--region", "guangzhou"], "--region 'guangzhou'"),
    (["teardown", "--queue", "a" * 52], "--queue"),
    (["teardown", "--endpoint", "http://h:1"], "--endpoint 'http://h:1'"),
])
def test_usage_errors_exit_2_in_one_line(no_cloud: None, run: Run, argv: list[str], says: str) -> None:
    code, _out, err = run(*argv)
    assert code == 2
    assert err.startswith("python -m handler deploy: ") and err.count("\n") == 1
    assert says in err


def test_a_package_that_is_not_the_function_zip_is_refused(
        deployer: Emulator, run: Run, store: str, tmp_path: Path) -> None:
    (tmp_path / "not.zip").write_text("hello")
    code, _, err = run("scf", "--store", store, "--package", str(tmp_path / "not.zip"))
    assert (code, "not a zip" in err) == (2, True)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("main.py", "")
    code, _, err = run("scf", "--store", store, "--package", str(other))
    assert (code, "no index.py at its root" in err) == (2, True)
    assert changes(deployer) == []


def test_no_credentials_is_refused_in_one_line(no_cloud: None, run: Run, package: str, store: str) -> None:
    code, _out, err = run("scf", "--store", store, "--package", package)
    assert code == 1 and "no Tencent Cloud credentials" in err and err.count("\n") == 1


def test_an_api_refusal_is_one_line_naming_the_call(
        deployer: Emulator, run: Run, package: str, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "not-the-key")
    code, _out, err = run("scf", "--store", store, "--package", package)
    assert code == 1 and err.count("\n") == 1
    assert "refused GetFunction (AuthFailure" in err and "TENCENTCLOUD_SECRET_KEY" in err


def test_without_the_deploy_extra_it_says_what_to_install(
        deployer: Emulator, run: Run, package: str, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # As if the package were absent: an import of a module None in sys.modules fails.
    monkeypatch.setitem(sys.modules, "tencentcloud.scf.v20180416.scf_client", None)
    code, _out, err = run("scf", "--store", store, "--package", package)
    assert code == 1 and "pip install -r requirements-deploy.txt" in err and err.count("\n") == 1
    assert deployer.calls == []


def test_help_lists_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    assert handler_main(["--help"]) == 0
    assert "deploy scf | teardown" in capsys.readouterr().out


def test_the_zip_the_deploy_uploads_is_the_package_byte_for_byte(
        deployer: Emulator, run: Run, package: str, store: str) -> None:
    assert run("scf", "--store", store, "--package", package)[0] == 0
    (create,) = [c for c in deployer.calls if c["action"] == "CreateFunction"]
    assert base64.b64decode(create["params"]["Code"]["ZipFile"]) == Path(package).read_bytes()
