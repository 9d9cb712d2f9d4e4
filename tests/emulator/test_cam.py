"""CAM 2019-01-16 in the emulator, through the real SDK's CamClient: the roles and policies deploy
writes, with CAM's codes for taken names, absent roles and policies, and documents CAM's policy syntax
refuses. Every answer deserialises into the SDK's response models with no field they do not know
(the SDK warns on one; this module makes that warning an error)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tencentcloud.cam.v20190116 import cam_client, models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from emulator import Emulator

from ..conftest import SECRET_ID, SECRET_KEY
from .sdk import refusal, typed

pytestmark = pytest.mark.filterwarnings("error::UserWarning")  # "... fileds are useless."


def trust(*services: str) -> dict[str, Any]:
    """A role's trust policy: these services may assume it."""
    return {"version": "2.0", "statement": [{"action": "name/sts:AssumeRole", "effect": "allow",
                                             "principal": {"service": list(services)}}]}


TRUST = trust("scf.qcloud.com")
PERMISSIONS = {"version": "2.0", "statement": [{"effect": "allow", "resource": ["*"],
                                                "action": ["batch:RetryJobs", "batch:DescribeJob"]}]}


def cam(emu: Emulator, action: str, **params: Any) -> Any:
    """The SDK's typed answer (`<Action>Response`) to `action`, sent by its own client."""
    return typed(emu, cam_client.CamClient, models, action, params, (SECRET_ID, SECRET_KEY), timeout_s=5)


def code(emu: Emulator, action: str, **params: Any) -> str:
    return refusal(lambda: cam(emu, action, **params), f"{action} {params}")


def role(emu: Emulator, name: str = "autoretry") -> str:
    role_id: str = cam(emu, "CreateRole", RoleName=name, PolicyDocument=json.dumps(TRUST),
                       Description="runs batch-autoretry").RoleId
    return role_id


def policy(emu: Emulator, name: str = "autoretry-batch") -> int:
    policy_id: int = cam(emu, "CreatePolicy", PolicyName=name, PolicyDocument=json.dumps(PERMISSIONS),
                         Description="retries Batch jobs").PolicyId
    return policy_id


def test_get_user_app_id_answers_the_accounts_uin_and_app_id(emu: Emulator) -> None:
    answer = cam(emu, "GetUserAppId")
    assert (answer.Uin, answer.OwnerUin, answer.AppId) == (emu.uin, emu.uin, emu.cam.app_id)


def test_a_role_is_created_read_given_a_new_trust_policy_and_deleted(emu: Emulator) -> None:
    role_id = role(emu)
    info = cam(emu, "GetRole", RoleName="autoretry").RoleInfo
    assert (info.RoleId, info.RoleName, json.loads(info.PolicyDocument), info.Description) == (
        role_id, "autoretry", TRUST, "runs batch-autoretry")
    assert cam(emu, "GetRole", RoleId=role_id).RoleInfo.RoleName == "autoretry"

    wider = trust("scf.qcloud.com", "cls.cloud.tencent.com")
    cam(emu, "UpdateAssumeRolePolicy", RoleName="autoretry", PolicyDocument=json.dumps(wider))
    assert json.loads(cam(emu, "GetRole", RoleName="autoretry").RoleInfo.PolicyDocument) == wider

    cam(emu, "DeleteRole", RoleName="autoretry")
    assert emu.cam.roles == {}
    assert code(emu, "GetRole", RoleName="autoretry") == "InvalidParameter.RoleNotExist"


def test_a_policy_is_created_found_by_keyword_read_updated_and_deleted(emu: Emulator) -> None:
    policy_id = policy(emu)
    policy(emu, "someone-elses")
    found = cam(emu, "ListPolicies", Rp=200, Page=1, Scope="Local", Keyword="autoretry")
    assert (found.TotalNum, [(p.PolicyId, p.PolicyName, p.Type) for p in found.List]) == (
        1, [(policy_id, "autoretry-batch", 1)])

    got = cam(emu, "GetPolicy", PolicyId=policy_id)
    assert (got.PolicyName, json.loads(got.PolicyDocument), got.Description) == (
        "autoretry-batch", PERMISSIONS, "retries Batch jobs")

    narrower = {"version": "2.0", "statement": [{"effect": "allow", "action": "batch:RetryJobs",
                                                 "resource": "*"}]}
    cam(emu, "UpdatePolicy", PolicyId=policy_id, PolicyDocument=json.dumps(narrower))
    assert json.loads(cam(emu, "GetPolicy", PolicyId=policy_id).PolicyDocument) == narrower

    cam(emu, "DeletePolicy", PolicyId=[policy_id])
    assert emu.cam.policy_named("autoretry-batch") is None
    assert code(emu, "GetPolicy", PolicyId=policy_id) == "ResourceNotFound.PolicyIdNotFound"


def test_update_policy_by_name_answers_the_policys_id(emu: Emulator) -> None:
    policy_id = policy(emu)
    answer = cam(emu, "UpdatePolicy", PolicyName="autoretry-batch", Description="new words")
    assert answer.PolicyId == policy_id
    assert cam(emu, "GetPolicy", PolicyId=policy_id).Description == "new words"


def test_a_policy_attached_to_a_role_is_listed_until_it_is_detached(emu: Emulator) -> None:
    role(emu)
    policy_id = policy(emu)
    cam(emu, "AttachRolePolicy", PolicyId=policy_id, AttachRoleName="autoretry")
    cam(emu, "AttachRolePolicy", PolicyId=policy_id, AttachRoleName="autoretry")  # already: no change
    listed = cam(emu, "ListAttachedRolePolicies", Page=1, Rp=200, RoleName="autoretry")
    assert (listed.TotalNum, [(p.PolicyId, p.PolicyName, p.PolicyType) for p in listed.List]) == (
        1, [(policy_id, "autoretry-batch", "User")])

    cam(emu, "DetachRolePolicy", PolicyId=policy_id, DetachRoleName="autoretry")
    assert cam(emu, "ListAttachedRolePolicies", Page=1, Rp=200, RoleName="autoretry").TotalNum == 0
    assert emu.cam.attached("autoretry") == []


def test_deleting_a_role_or_a_policy_detaches_it(emu: Emulator) -> None:
    role(emu, "first")
    role(emu, "second")
    policy_id = policy(emu)
    for name in ("first", "second"):
        cam(emu, "AttachRolePolicy", PolicyId=policy_id, AttachRoleName=name)
    cam(emu, "DeleteRole", RoleName="first")
    assert "first" not in emu.cam.attachments
    cam(emu, "DeletePolicy", PolicyId=[policy_id])
    assert emu.cam.attached("second") == []


def test_a_role_name_already_taken_is_role_name_in_use_and_the_role_keeps_its_trust_policy(
    emu: Emulator
) -> None:
    role(emu)
    assert code(emu, "CreateRole", RoleName="autoretry",
                PolicyDocument=json.dumps(trust("cls.cloud.tencent.com"))) == "InvalidParameter.RoleNameInUse"
    assert json.loads(emu.cam.roles["autoretry"].document) == TRUST


def test_a_policy_name_already_taken_is_policy_name_in_use(emu: Emulator) -> None:
    policy(emu)
    assert code(emu, "CreatePolicy", PolicyName="autoretry-batch",
                PolicyDocument=json.dumps(PERMISSIONS)) == "FailedOperation.PolicyNameInUse"
    assert len(emu.cam.policies) == 1


@pytest.mark.parametrize(("action", "params"), [
    ("GetRole", {"RoleName": "absent"}),
    ("UpdateAssumeRolePolicy", {"RoleName": "absent", "PolicyDocument": json.dumps(TRUST)}),
    ("DeleteRole", {"RoleName": "absent"}),
    ("AttachRolePolicy", {"AttachRoleName": "absent"}),
    ("DetachRolePolicy", {"DetachRoleName": "absent"}),
])
def test_an_absent_role_is_role_not_exist(emu: Emulator, action: str, params: dict[str, Any]) -> None:
    if action in ("AttachRolePolicy", "DetachRolePolicy"):
        params = {**params, "PolicyId": policy(emu)}
    assert code(emu, action, **params) == "InvalidParameter.RoleNotExist"


def test_an_absent_policy_is_policy_id_not_found_and_a_delete_naming_one_deletes_nothing(
    emu: Emulator
) -> None:
    policy_id = policy(emu)
    assert code(emu, "GetPolicy", PolicyId=policy_id + 1000) == "ResourceNotFound.PolicyIdNotFound"
    assert code(emu, "UpdatePolicy", PolicyId=policy_id + 1000,
                PolicyDocument=json.dumps(PERMISSIONS)) == "ResourceNotFound.PolicyIdNotFound"
    assert code(emu, "DeletePolicy", PolicyId=[policy_id, policy_id + 1000]) == \
        "ResourceNotFound.PolicyIdNotFound"
    assert list(emu.cam.policies) == [policy_id]


def test_attaching_or_detaching_an_absent_policy_is_policy_id_not_exist(emu: Emulator) -> None:
    role(emu)
    assert code(emu, "AttachRolePolicy", PolicyId=404, AttachRoleName="autoretry") == \
        "InvalidParameter.PolicyIdNotExist"
    assert code(emu, "DetachRolePolicy", PolicyId=404, DetachRoleName="autoretry") == \
        "InvalidParameter.PolicyIdNotExist"


@pytest.mark.parametrize(("document", "expected"), [
    ("not json", "InvalidParameter.PolicyDocumentError"),
    (json.dumps(["version", "2.0"]), "InvalidParameter.PolicyDocumentError"),
    (json.dumps({"statement": PERMISSIONS["statement"]}), "InvalidParameter.VersionError"),
    (json.dumps({"version": "1.0", "statement": PERMISSIONS["statement"]}), "InvalidParameter.VersionError"),
    (json.dumps({"version": "2.0"}), "InvalidParameter.StatementError"),
    (json.dumps({"version": "2.0", "statement": []}), "InvalidParameter.StatementError"),
    (json.dumps({"version": "2.0", "statement": [{"action": "batch:RetryJobs", "resource": "*"}]}),
     "InvalidParameter.EffectError"),
    (json.dumps({"version": "2.0", "statement": [{"effect": "allow", "resource": "*"}]}),
     "InvalidParameter.ActionMiss"),
    (json.dumps({"version": "2.0", "statement": [{"effect": "allow", "action": "RetryJobs",
                                                  "resource": "*"}]}), "InvalidParameter.ActionError"),
    (json.dumps({"version": "2.0", "statement": [{"effect": "allow", "action": "batch:RetryJobs"}]}),
     "InvalidParameter.ResourceError"),
])
def test_a_policy_document_cams_syntax_refuses_is_refused_with_its_code_and_nothing_is_created(
    emu: Emulator, document: str, expected: str
) -> None:
    assert code(emu, "CreatePolicy", PolicyName="autoretry-batch", PolicyDocument=document) == expected
    assert emu.cam.policies == {}


def test_an_update_with_a_document_cams_syntax_refuses_keeps_the_old_document(emu: Emulator) -> None:
    policy_id = policy(emu)
    assert code(emu, "UpdatePolicy", PolicyId=policy_id,
                PolicyDocument='{"version":"2.0"}') == "InvalidParameter.StatementError"
    assert json.loads(emu.cam.policies[policy_id].document) == PERMISSIONS


def test_a_trust_policy_without_a_principal_is_refused(emu: Emulator) -> None:
    no_principal = {"version": "2.0", "statement": [{"action": "name/sts:AssumeRole", "effect": "allow"}]}
    assert code(emu, "CreateRole", RoleName="autoretry",
                PolicyDocument=json.dumps(no_principal)) == "InvalidParameter.PrincipalError"
    assert emu.cam.roles == {}


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "名字"])
def test_a_role_or_policy_name_outside_cams_characters_is_refused(emu: Emulator, name: str) -> None:
    assert code(emu, "CreateRole", RoleName=name,
                PolicyDocument=json.dumps(TRUST)) == "InvalidParameter.RoleNameError"
    assert code(emu, "CreatePolicy", PolicyName=name,
                PolicyDocument=json.dumps(PERMISSIONS)) == "InvalidParameter.PolicyNameError"


def test_a_description_over_300_bytes_is_refused(emu: Emulator) -> None:
    assert code(emu, "CreatePolicy", PolicyName="autoretry-batch", PolicyDocument=json.dumps(PERMISSIONS),
                Description="é" * 151) == "InvalidParameter.DescriptionLengthOverlimit"


def test_list_policies_pages_by_rp_and_page_and_has_no_preset_policies(emu: Emulator) -> None:
    ids = [policy(emu, f"autoretry-{n}") for n in range(3)]
    second = cam(emu, "ListPolicies", Rp=1, Page=2, Scope="Local")
    assert (second.TotalNum, [p.PolicyId for p in second.List]) == (3, [ids[1]])
    assert cam(emu, "ListPolicies", Rp=20, Page=1, Scope="QCS").TotalNum == 0
    assert code(emu, "ListPolicies", Rp=201, Page=1) == "InvalidParameter.ParamError"
    assert code(emu, "ListPolicies", Rp=20, Page=1, Scope="Mine") == "InvalidParameter.ScopeError"


# --- sub-users ---------------------------------------------------------------------------------
def user(emu: Emulator, name: str = "autoretry-key", *, use_api: int = 1) -> Any:
    return cam(emu, "AddUser", Name=name, Remark="the key of batch-autoretry", ConsoleLogin=0,
               UseApi=use_api)


def signs(emu: Emulator, secret_id: str, secret_key: str) -> str:
    """What the emulator answers a Batch call signed with this key: "ok" or the error's code."""
    from tencentcloud.common.common_client import CommonClient

    http = HttpProfile(endpoint=emu.endpoint, protocol="http", reqTimeout=5)
    client = CommonClient("batch", "2017-03-12", credential.Credential(secret_id, secret_key),
                          "ap-guangzhou", profile=ClientProfile(httpProfile=http))
    try:
        client.call_json("DescribeJobs", {})
    except TencentCloudSDKException as e:
        return str(e.code)
    return "ok"


def test_a_sub_user_made_with_use_api_answers_its_key_once_and_the_key_signs_calls(
    emu: Emulator
) -> None:
    made = user(emu)
    assert made.Name == "autoretry-key" and made.Uin != int(emu.uin)
    assert made.SecretId.startswith("AKID") and len(made.SecretKey) >= 32
    assert made.Password == ""  # no console login: no password
    got = cam(emu, "GetUser", Name="autoretry-key")
    assert (got.Uin, got.Uid, got.Name, got.Remark, got.ConsoleLogin) == (
        made.Uin, made.Uid, "autoretry-key", "the key of batch-autoretry", 0)
    assert made.SecretKey not in got.to_json_string()  # GetUser never shows the key again
    assert signs(emu, made.SecretId, made.SecretKey) == "ok"
    assert signs(emu, made.SecretId, "not-its-key") == "AuthFailure.SignatureFailure"


def test_a_sub_user_made_without_use_api_has_no_key(emu: Emulator) -> None:
    made = user(emu, use_api=0)
    assert (made.SecretId, made.SecretKey) == ("", "")
    cam(emu, "DeleteUser", Name="autoretry-key")  # no key: no Force needed
    assert emu.cam.users == {}


def test_deleting_a_sub_user_with_a_key_needs_force_and_revokes_the_key(emu: Emulator) -> None:
    made = user(emu)
    assert code(emu, "DeleteUser", Name="autoretry-key") == "OperationDenied.HaveKeys"
    assert signs(emu, made.SecretId, made.SecretKey) == "ok"
    cam(emu, "DeleteUser", Name="autoretry-key", Force=1)
    assert emu.cam.user("autoretry-key") is None
    assert signs(emu, made.SecretId, made.SecretKey) == "AuthFailure.SecretIdNotFound"
    assert code(emu, "GetUser", Name="autoretry-key") == "ResourceNotFound.UserNotExist"


def test_a_policy_attached_to_a_sub_user_is_listed_until_detached_or_deleted(emu: Emulator) -> None:
    uin = user(emu).Uin
    policy_id = policy(emu)
    cam(emu, "AttachUserPolicy", PolicyId=policy_id, AttachUin=uin)
    cam(emu, "AttachUserPolicy", PolicyId=policy_id, AttachUin=uin)  # already: no change
    listed = cam(emu, "ListAttachedUserPolicies", TargetUin=uin, Page=1, Rp=200)
    assert (listed.TotalNum, [(p.PolicyId, p.PolicyName, p.PolicyType) for p in listed.List]) == (
        1, [(policy_id, "autoretry-batch", "User")])
    found = cam(emu, "ListPolicies", Rp=20, Page=1, Scope="Local", Keyword="autoretry-batch")
    assert found.List[0].AttachEntityCount == 1

    cam(emu, "DetachUserPolicy", PolicyId=policy_id, DetachUin=uin)
    assert cam(emu, "ListAttachedUserPolicies", TargetUin=uin, Page=1, Rp=200).TotalNum == 0
    cam(emu, "AttachUserPolicy", PolicyId=policy_id, AttachUin=uin)
    cam(emu, "DeletePolicy", PolicyId=[policy_id])
    assert emu.cam.user_attached("autoretry-key") == []
    # An absent user's policies: none (CAM lists no code for it).
    assert cam(emu, "ListAttachedUserPolicies", TargetUin=uin + 1, Page=1, Rp=20).TotalNum == 0


def test_a_sub_user_name_in_use_or_outside_cams_characters_is_refused(emu: Emulator) -> None:
    made = user(emu)
    assert code(emu, "AddUser", Name="autoretry-key", UseApi=1) == "InvalidParameter.SubUserNameInUse"
    assert emu.cam.users["autoretry-key"].secret_id == made.SecretId  # the first key stays
    assert code(emu, "AddUser", Name="has space", UseApi=1) == "InvalidParameter.UserNameIllegal"
    assert list(emu.cam.users) == ["autoretry-key"]


@pytest.mark.parametrize(("action", "params"), [
    ("GetUser", {"Name": "absent"}),
    ("DeleteUser", {"Name": "absent", "Force": 1}),
    ("AttachUserPolicy", {"AttachUin": 100099999999}),
    ("DetachUserPolicy", {"DetachUin": 100099999999}),
])
def test_an_absent_sub_user_is_user_not_exist(emu: Emulator, action: str, params: dict[str, Any]) -> None:
    if action in ("AttachUserPolicy", "DetachUserPolicy"):
        params = {**params, "PolicyId": policy(emu)}
    assert code(emu, action, **params) == "ResourceNotFound.UserNotExist"


def test_attaching_an_absent_policy_to_a_sub_user_is_policy_id_not_exist(emu: Emulator) -> None:
    uin = user(emu).Uin
    assert code(emu, "AttachUserPolicy", PolicyId=404, AttachUin=uin) == "InvalidParameter.PolicyIdNotExist"
    assert code(emu, "DetachUserPolicy", PolicyId=404, DetachUin=uin) == "InvalidParameter.PolicyIdNotExist"
