"""The emulator refuses what API 3.0 refuses: a field the pinned SDK's request model does not name
(`UnknownParameter`), at the top or inside a nested model, and a value of the wrong type
(`InvalidParameter`); a refused call changes nothing. Requests go through the real SDK's CommonClient,
signed, as the function, `wire` and `deploy` send them."""

from __future__ import annotations

from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from emulator import Emulator
from emulator.api import ApiError
from emulator.models import check_request, models_module

from ..conftest import SECRET_ID, SECRET_KEY

VERSIONS = {"batch": "2017-03-12", "cam": "2019-01-16", "tdmq": "2020-02-17", "tag": "2018-08-13",
            "scf": "2018-04-16"}
TRUST = ('{"version":"2.0","statement":[{"action":"name/sts:AssumeRole","effect":"allow",'
         '"principal":{"service":["scf.qcloud.com"]}}]}')


def call(emu: Emulator, service: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    http = HttpProfile(endpoint=emu.endpoint, protocol="http", reqTimeout=5)
    client = CommonClient(service, VERSIONS[service], credential.Credential(SECRET_ID, SECRET_KEY),
                          "ap-guangzhou", profile=ClientProfile(httpProfile=http))
    answer: dict[str, Any] = client.call_json(action, params)["Response"]
    return answer


def refusal(emu: Emulator, service: str, action: str, params: dict[str, Any]) -> tuple[str, str]:
    """(code, message) of the error the call answers."""
    try:
        call(emu, service, action, params)
    except TencentCloudSDKException as e:
        return str(e.code), str(e.message)
    raise AssertionError(f"{action} {params} succeeded; a refusal was expected")


def local_refusal(service: str, action: str, params: dict[str, Any]) -> tuple[str, str] | None:
    try:
        check_request(service, VERSIONS[service], action, params)
    except ApiError as e:
        return e.code, e.message
    return None


def test_batch_scf_cam_and_tdmq_are_checked_against_the_installed_sdk_models_and_the_tag_service_is_not(
) -> None:
    for service in ("batch", "scf", "cam", "tdmq"):
        assert models_module(service, VERSIONS[service]) is not None, f"no SDK models for {service}"
    assert models_module("tag", VERSIONS["tag"]) is None  # no tencentcloud-sdk-python-tag installed


def test_a_misspelled_field_is_refused_as_unknown_and_creates_nothing(emu: Emulator) -> None:
    code, message = refusal(emu, "cam", "CreateRole", {"RoleNmae": "autoretry", "PolicyDocument": TRUST})
    assert (code, message) == ("UnknownParameter", "The parameter `RoleNmae` is not recognized.")
    assert emu.cam.roles == {}
    assert emu.count("CreateRole", error="UnknownParameter") == 1

    code, _ = refusal(emu, "tdmq", "CreateCmqTopic", {"TopicName": "batch-events", "FilterTyp": 1})
    assert code == "UnknownParameter"
    assert emu.cmq.topic_names == {}


def test_a_misspelled_field_inside_a_nested_model_is_refused_with_its_path(emu: Emulator) -> None:
    job = {"JobName": "render", "Priority": 1,
           "Tasks": [{"TaskName": "main", "TaskInstanceNum": 1, "MaxRetryCount": 0, "Foo": 1}]}
    code, message = refusal(emu, "batch", "SubmitJob", {"Placement": {"Zone": "ap-guangzhou-3"}, "Job": job})
    assert (code, message) == ("UnknownParameter", "The parameter `Job.Tasks.0.Foo` is not recognized.")
    assert emu.jobs() == []

    code, message = refusal(emu, "cam", "CreateRole", {
        "RoleName": "autoretry", "PolicyDocument": TRUST, "Tags": [{"Key": "team", "Valeu": "ops"}]})
    assert (code, message) == ("UnknownParameter", "The parameter `Tags.0.Valeu` is not recognized.")
    assert emu.cam.roles == {}


def test_a_misspelled_environment_variable_field_of_an_scf_function_is_refused() -> None:
    good = {"FunctionName": "batch-autoretry", "Environment": {"Variables": [{"Key": "A", "Value": "1"}]}}
    assert local_refusal("scf", "CreateFunction", good) is None
    bad = {"FunctionName": "batch-autoretry",
           "Environment": {"Variables": [{"Key": "A", "Value": "1"}, {"Key": "B", "Vaule": "2"}]}}
    assert local_refusal("scf", "CreateFunction", bad) == (
        "UnknownParameter", "The parameter `Environment.Variables.1.Vaule` is not recognized.")


def test_a_value_of_the_wrong_type_is_refused_with_invalid_parameter_and_creates_nothing(
    emu: Emulator
) -> None:
    code, message = refusal(emu, "tdmq", "CreateCmqQueue",
                            {"QueueName": "notices", "VisibilityTimeout": "30"})
    assert (code, message) == (
        "InvalidParameter", "The parameter `VisibilityTimeout` must be of type Integer, not a string.")
    assert emu.cmq.queues == {}

    code, message = refusal(emu, "cam", "DeletePolicy", {"PolicyId": 7})
    assert (code, message) == (
        "InvalidParameter", "The parameter `PolicyId` must be of type Array of Integer, not an integer.")


def test_a_string_field_that_carries_json_takes_the_json_as_a_string_not_as_an_object(emu: Emulator) -> None:
    code, message = refusal(emu, "cam", "CreateRole", {"RoleName": "autoretry",
                                                       "PolicyDocument": {"version": "2.0"}})
    assert (code, message) == (
        "InvalidParameter", "The parameter `PolicyDocument` must be of type String, not an object.")
    assert call(emu, "cam", "CreateRole", {"RoleName": "autoretry", "PolicyDocument": TRUST})["RoleId"]


def test_a_boolean_is_no_integer_and_an_integer_no_boolean(emu: Emulator) -> None:
    code, _ = refusal(emu, "batch", "DescribeJobs", {"Offset": 0, "Limit": True})
    assert code == "InvalidParameter"
    code, message = refusal(emu, "tdmq", "CreateCmqQueue", {"QueueName": "notices", "Trace": 1})
    assert (code, message) == (
        "InvalidParameter", "The parameter `Trace` must be of type Boolean, not an integer.")
    assert call(emu, "tdmq", "CreateCmqQueue", {"QueueName": "notices", "Trace": False})["QueueId"]


def test_an_integer_is_a_number_where_the_sdk_declares_a_float_but_a_string_is_not() -> None:
    action = "PutProvisionedConcurrencyConfig"
    assert local_refusal("scf", action, {"FunctionName": "f", "TrackingTarget": 1}) is None
    assert local_refusal("scf", action, {"FunctionName": "f", "TrackingTarget": 0.5}) is None
    assert local_refusal("scf", action, {"FunctionName": "f", "TrackingTarget": "0.5"}) == (
        "InvalidParameter", "The parameter `TrackingTarget` must be of type Float, not a string.")
    assert local_refusal("scf", action, {"FunctionName": "f", "TrackingTarget": True}) is not None


def test_an_integer_where_the_sdk_declares_an_integer_refuses_a_decimal_number() -> None:
    assert local_refusal("batch", "DescribeJobs", {"Limit": 20.0}) == (
        "InvalidParameter", "The parameter `Limit` must be of type Integer, not a decimal number.")


def test_a_negative_id_in_a_list_the_sdk_declares_non_negative_is_refused(emu: Emulator) -> None:
    code, message = refusal(emu, "cam", "DeletePolicy", {"PolicyId": [1, -2]})
    assert (code, message) == (
        "InvalidParameter", "The parameter `PolicyId.1` must be of type non-negative Integer, "
                            "not the integer -2.")


def test_a_list_of_models_refuses_an_element_that_is_not_an_object() -> None:
    assert local_refusal("batch", "DescribeJobs", {"Filters": ["job-state"]}) == (
        "InvalidParameter", "The parameter `Filters.0` must be of type Filter, not a string.")


def test_null_is_taken_as_an_absent_field() -> None:
    assert local_refusal("cam", "ListPolicies", {"Rp": None, "Page": 1, "Scope": "Local"}) is None


def test_an_action_the_models_do_not_know_stays_invalid_action_whatever_its_fields(emu: Emulator) -> None:
    assert refusal(emu, "cam", "CreateRoel", {"Anything": 1})[0] == "InvalidAction"
    assert refusal(emu, "tdmq", "CreateCmqQeue", {"QueueName": 1})[0] == "InvalidAction"


def test_the_tag_service_has_no_sdk_models_here_so_its_fields_reach_the_service_unchecked(
    emu: Emulator
) -> None:
    job = emu.add_failed_job("render")
    answer = call(emu, "tag", "TagResources", {"ResourceList": [emu.resource(job)],
                                               "Tags": [{"TagKey": "a", "TagValue": "1"}], "Extra": 1})
    assert answer["FailedResources"] == []
    with emu.fleet.lock:
        assert emu.fleet.jobs[job].tags == {"a": "1"}
