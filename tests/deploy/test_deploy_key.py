"""`python -m handler deploy key | teardown-key`: the Tencent key of the function outside Tencent
(AWS Lambda), a CAM sub-user allowed exactly the function's calls. Run in this process against the
emulator's CAM through the real SDK; the key it makes is then used to sign a Batch call, as the
function on Lambda would."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from emulator import Emulator
from emulator.faults import Faults
from handler.__main__ import main as handler_main
from handler.deploy.documents import key_policy, role_policy

from .test_deploy_scf import Run, changes, lines, point_at

USER, POLICY = "BatchAutoretry-batch-autoretry", "BatchAutoretry-batch-autoretry-key"


@pytest.fixture
def deployer(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    return point_at(emu, monkeypatch)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "tencent-key.json"


def signs(emu: Emulator, secret_id: str, secret_key: str) -> str:
    """What the emulator answers a Batch call signed with this key: "ok" or the error's code."""
    http = HttpProfile(endpoint=emu.endpoint, protocol="http", reqTimeout=5)
    client = CommonClient("batch", "2017-03-12", credential.Credential(secret_id, secret_key),
                          emu.region, profile=ClientProfile(httpProfile=http))
    try:
        client.call_json("DescribeJobs", {})
    except TencentCloudSDKException as e:
        return str(e.code)
    return "ok"


def the_user(emu: Emulator) -> Any:
    user = emu.cam.user(USER)
    assert user is not None
    return user


# --- the document ----------------------------------------------------------------------------------
def test_the_keys_policy_is_the_roles_without_invoke_function() -> None:
    role = role_policy("ap-shanghai", "200000000002", "jobs-q", "fn-a")
    key = key_policy("ap-shanghai", "200000000002", "jobs-q")
    assert key["statement"] == [s for s in role["statement"]
                                if s["action"] != ["name/scf:InvokeFunction"]]
    assert len(key["statement"]) == len(role["statement"]) - 1
    tagging = key_policy("ap-shanghai", "200000000002", "jobs-q", tag_jobs=True)
    assert tagging["statement"] == [*key["statement"], {
        "effect": "allow", "action": ["name/tag:TagResources"], "resource": ["*"]}]


# --- the command -----------------------------------------------------------------------------------
def test_deploy_key_makes_a_user_without_console_whose_key_is_only_in_the_key_file(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    emu = deployer
    code, out, err = run("key", "--key-file", str(key_file))
    assert code == 0, err
    said = lines(out)
    assert said[f"user {USER}"].startswith("created (UIN ")
    assert f"its key is in {key_file} (mode 0600)" in out
    assert said[f"policy {POLICY}"] == f"created, attached to {USER}"
    user = the_user(emu)
    assert user.console_login == 0 and user.secret_id.startswith("AKID")
    assert json.loads(key_file.read_text()) == {"SecretId": user.secret_id, "SecretKey": user.secret_key}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert user.secret_key not in out + err and user.secret_id not in out + err
    policy = emu.cam.policy_named(POLICY)
    assert policy is not None
    assert json.loads(policy.document) == key_policy(emu.region, emu.uin, "batch-autoretry")
    assert emu.cam.user_attached(USER) == [POLICY]
    assert emu.cam.roles == {}  # a key, not a role
    assert signs(emu, user.secret_id, user.secret_key) == "ok"


def test_a_second_run_is_up_to_date_changes_nothing_and_makes_no_new_key(
        deployer: Emulator, run: Run, key_file: Path, tmp_path: Path) -> None:
    emu = deployer
    assert run("key", "--key-file", str(key_file))[0] == 0
    written, before = key_file.read_text(), len(emu.calls)
    again = tmp_path / "again.json"
    code, out, err = run("key", "--key-file", str(again))
    assert code == 0, err
    assert changes(emu, before) == []
    said = lines(out)
    assert said[f"user {USER}"].startswith("up to date (its key went to the key file when the user "
                                           "was created, and CAM cannot show it again")
    assert f"Users → {USER} → API key" in said[f"user {USER}"]
    assert said[f"policy {POLICY}"] == "up to date"
    assert not again.exists() and key_file.read_text() == written
    user = the_user(emu)
    assert user.secret_key not in out + err and user.secret_id not in out + err


def test_a_changed_queue_or_tag_jobs_updates_the_keys_policy_in_place(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    emu = deployer
    assert run("key", "--key-file", str(key_file))[0] == 0
    policy = emu.cam.policy_named(POLICY)
    assert policy is not None
    before = len(emu.calls)
    code, out, err = run("key", "--key-file", str(key_file), "--queue", "other-queue", "--tag-jobs")
    assert code == 0, err
    assert changes(emu, before) == ["UpdatePolicy"]
    assert lines(out)[f"policy {POLICY}"] == "updated (PolicyDocument)"
    assert f"AUTORETRY_ACCOUNT_UIN={emu.uin}" in out
    assert json.loads(policy.document) == key_policy(emu.region, emu.uin, "other-queue", tag_jobs=True)


def test_dry_run_prints_every_call_changes_nothing_and_writes_no_key(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    emu = deployer
    code, out, err = run("key", "--key-file", str(key_file), "--dry-run")
    assert code == 0, err
    assert changes(emu) == [] and emu.cam.users == {} and emu.cam.policies == {}
    assert not key_file.exists()
    for action in ("AddUser", "CreatePolicy", "AttachUserPolicy"):
        assert f"would call {action} " in out, action
    assert "called GetUserAppId " in out and "called GetUser " in out
    assert lines(out)[f"user {USER}"] == f"would be created, its key written to {key_file}"
    # On a key that exists, a dry run of a change says what it would do, and does not.
    assert run("key", "--key-file", str(key_file))[0] == 0
    user, written, before = the_user(emu), key_file.read_text(), len(emu.calls)
    code, out, err = run("key", "--key-file", str(key_file), "--tag-jobs", "--dry-run")
    assert code == 0, err
    assert changes(emu, before) == [] and key_file.read_text() == written
    assert lines(out)[f"policy {POLICY}"] == "would be updated (PolicyDocument)"
    assert user.secret_key not in out + err and user.secret_id not in out + err


def test_teardown_key_deletes_the_policy_and_the_user_whose_key_then_fails_and_a_second_is_a_no_op(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    emu = deployer
    assert run("key", "--key-file", str(key_file))[0] == 0
    user, before = the_user(emu), len(emu.calls)
    code, out, err = run("teardown-key", "--dry-run")
    assert code == 0, err
    assert changes(emu, before) == [] and emu.cam.user(USER) is not None
    for action in ("DetachUserPolicy", "DeletePolicy", "DeleteUser"):
        assert f"would call {action} " in out, action
    code, out, err = run("teardown-key")
    assert code == 0, err
    assert lines(out) == {f"policy {POLICY}": "deleted", f"user {USER}": "deleted, its key with it"}
    assert emu.cam.users == {} and emu.cam.policies == {}
    assert signs(emu, user.secret_id, user.secret_key) == "AuthFailure.SecretIdNotFound"
    before = len(emu.calls)
    code, out, err = run("teardown-key")
    assert code == 0, err
    assert changes(emu, before) == []
    assert lines(out) == {f"policy {POLICY}": "already gone", f"user {USER}": "already gone"}


def test_teardown_key_leaves_the_roles_policy_of_the_same_name(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    emu = deployer
    document = json.dumps(role_policy(emu.region, emu.uin, "batch-autoretry", "batch-autoretry"))
    emu.cam.handle("CreatePolicy", {"PolicyName": "BatchAutoretry-batch-autoretry",
                                    "PolicyDocument": document})
    assert run("key", "--key-file", str(key_file))[0] == 0
    assert run("teardown-key")[0] == 0
    assert [p.name for p in emu.cam.policies.values()] == ["BatchAutoretry-batch-autoretry"]


def test_a_key_file_that_exists_is_refused_before_any_change(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    key_file.write_text("someone's notes\n")
    for extra in ([], ["--dry-run"]):
        code, _out, err = run("key", "--key-file", str(key_file), *extra)
        assert code == 2 and err.count("\n") == 1
        assert f"--key-file {key_file}: exists" in err
    assert changes(deployer) == [] and deployer.cam.users == {}
    assert key_file.read_text() == "someone's notes\n"


def test_a_key_file_in_no_directory_is_refused_before_any_change(
        deployer: Emulator, run: Run, tmp_path: Path) -> None:
    nowhere = tmp_path / "absent-dir" / "key.json"
    code, _out, err = run("key", "--key-file", str(nowhere))
    assert code == 2 and f"--key-file {nowhere}: cannot be created" in err
    assert changes(deployer) == [] and deployer.cam.users == {}


def test_an_add_user_that_fails_leaves_no_key_file_and_the_next_run_makes_the_key(
        deployer: Emulator, run: Run, key_file: Path) -> None:
    emu = deployer
    emu.faults = Faults(rate=1.0, kinds=("internal_error",), actions=("AddUser",))
    code, _out, err = run("key", "--key-file", str(key_file))
    assert code == 1 and "AddUser failed (InternalError" in err
    assert not key_file.exists() and emu.cam.users == {}
    emu.faults = Faults()
    code, _out, err = run("key", "--key-file", str(key_file))
    assert code == 0, err
    assert json.loads(key_file.read_text())["SecretId"] == the_user(emu).secret_id


def test_key_without_a_key_file_is_a_usage_error_in_one_line(
        deployer: Emulator, run: Run) -> None:
    code, _out, err = run("key")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("python -m handler deploy: --key-file PATH")
    assert deployer.calls == []


def test_help_lists_deploy_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert handler_main(["--help"]) == 0
    assert "deploy key --key-file PATH | teardown-key" in capsys.readouterr().out
