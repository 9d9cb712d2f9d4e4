"""The Tag service for Batch jobs: tags written after submission through the real SDK's CommonClient
(signed for `tag`) show in DescribeJob(s); read-only mode answers the way a refusing service would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from emulator import Emulator, Faults

from .sdk import REGION, SECRET_ID, SECRET_KEY, call, client, error_code

SPENT = "autoretry:retries-spent"


def emulator(**switches: Any) -> Emulator:
    return Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=20.0, limits={}, **switches)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator() as e:
        yield e


def tag(emu: Emulator, jobs: list[str], tags: dict[str, str]) -> dict[str, Any]:
    return call(emu, "TagResources", {"ResourceList": [emu.resource(j) for j in jobs],
                                      "Tags": [{"TagKey": k, "TagValue": v} for k, v in tags.items()]}, "tag")


def job_tags(emu: Emulator, job: str) -> tuple[dict[str, str], dict[str, str]]:
    """The job's tags as DescribeJobs and as DescribeJob answer them."""
    listed = call(emu, "DescribeJobs", {"JobIds": [job]})["JobSet"][0]["Tags"]
    detail = call(emu, "DescribeJob", {"JobId": job})["Tags"]
    return ({t["Key"]: t["Value"] for t in listed}, {t["Key"]: t["Value"] for t in detail})


def test_resource_names_are_six_segment_batch_job_names(emu: Emulator) -> None:
    assert emu.resource("job-abcd1234") == "qcs::batch:ap-guangzhou:uin/100000000001:job/job-abcd1234"


def test_tags_written_after_submission_show_in_describe_jobs_and_describe_job(emu: Emulator) -> None:
    job = emu.add_failed_job("render", tags={"team": "vfx"})
    answer = tag(emu, [job], {SPENT: "1"})
    assert answer["FailedResources"] == []
    assert job_tags(emu, job) == ({"team": "vfx", SPENT: "1"},) * 2


def test_tagging_an_existing_key_replaces_its_value_on_every_listed_job(emu: Emulator) -> None:
    jobs = [emu.add_failed_job(f"j{i}") for i in range(3)]
    tag(emu, jobs, {SPENT: "1"})
    tag(emu, jobs[:2], {SPENT: "2"})
    assert [job_tags(emu, j)[0][SPENT] for j in jobs] == ["2", "2", "1"]


def test_tags_written_by_the_tag_service_are_matched_by_the_tag_filter(emu: Emulator) -> None:
    job, other = emu.add_failed_job("a"), emu.add_failed_job("b")
    tag(emu, [job], {SPENT: "3"})
    page = call(emu, "DescribeJobs", {"Filters": [{"Name": f"tag:{SPENT}", "Values": ["3"]}]})
    assert [j["JobId"] for j in page["JobSet"]] == [job] and other != job


def test_modify_resource_tags_replaces_and_deletes_and_untag_removes(emu: Emulator) -> None:
    job = emu.add_failed_job("a", tags={"keep": "x", "drop": "y"})
    call(emu, "ModifyResourceTags", {"Resource": emu.resource(job),
                                     "ReplaceTags": [{"TagKey": SPENT, "TagValue": "2"}],
                                     "DeleteTags": [{"TagKey": "drop"}]}, "tag")
    assert job_tags(emu, job)[1] == {"keep": "x", SPENT: "2"}
    call(emu, "UnTagResources", {"ResourceList": [emu.resource(job)], "TagKeys": [SPENT]}, "tag")
    assert job_tags(emu, job)[1] == {"keep": "x"}


def test_get_resources_reads_the_tags_back(emu: Emulator) -> None:
    job = emu.add_failed_job("a")
    tag(emu, [job], {SPENT: "1"})
    answer = call(emu, "GetResources", {"ResourceList": [emu.resource(job)]}, "tag")
    assert answer["ResourceTagMappingList"] == [
        {"Resource": emu.resource(job), "Tags": [{"TagKey": SPENT, "TagValue": "1"}]}]


def test_unknown_jobs_and_other_accounts_come_back_in_failed_resources(emu: Emulator) -> None:
    job = emu.add_failed_job("a")
    stranger = "qcs::batch:ap-guangzhou:uin/999:job/" + job
    answer = call(emu, "TagResources", {"ResourceList": [emu.resource(job), emu.resource("job-zzzzzzzz"),
                                                         stranger],
                                        "Tags": [{"TagKey": SPENT, "TagValue": "1"}]}, "tag")
    failed = {f["Resource"]: f["Code"] for f in answer["FailedResources"]}
    assert failed == {emu.resource("job-zzzzzzzz"): "InvalidParameterValue.ResourceIdInvalid",
                      stranger: "InvalidParameterValue.UinInvalid"}
    assert job_tags(emu, job)[0] == {SPENT: "1"}


@pytest.mark.parametrize(("tags", "code"), [
    ({"qcloud:x": "1"}, "InvalidParameterValue.ReservedTagKey"),
    ({"": "1"}, "InvalidParameterValue.TagKeyEmpty"),
    ({"k" * 128: "1"}, "InvalidParameterValue.TagKeyLengthExceeded"),
    ({"a#b": "1"}, "InvalidParameterValue.TagKeyCharacterIllegal"),
])
def test_bad_tags_are_refused_with_the_tag_services_codes(emu: Emulator, tags: dict[str, str],
                                                          code: str) -> None:
    job = emu.add_failed_job("a")
    params = {"ResourceList": [emu.resource(job)],
              "Tags": [{"TagKey": k, "TagValue": v} for k, v in tags.items()]}
    assert error_code(emu, "TagResources", params, "tag") == code
    assert job_tags(emu, job)[0] == {}


def test_a_malformed_resource_name_is_refused(emu: Emulator) -> None:
    params = {"ResourceList": ["batch/job-abcd1234"], "Tags": [{"TagKey": SPENT, "TagValue": "1"}]}
    assert error_code(emu, "TagResources", params, "tag") == "InvalidParameterValue.ResourceDescriptionError"


def test_more_than_ten_resources_per_call_is_refused(emu: Emulator) -> None:
    jobs = [emu.add_failed_job(f"j{i}") for i in range(11)]
    params = {"ResourceList": [emu.resource(j) for j in jobs], "Tags": [{"TagKey": SPENT, "TagValue": "1"}]}
    assert error_code(emu, "TagResources", params, "tag") == "LimitExceeded.ResourceNumPerRequest"


def test_a_tag_call_signed_for_batch_fails_the_signature_check(emu: Emulator) -> None:
    job = emu.add_failed_job("a")
    batch_signed = client(emu, "batch", version="2018-08-13")
    with pytest.raises(TencentCloudSDKException) as err:
        batch_signed.call_json("TagResources", {"ResourceList": [emu.resource(job)],
                                                "Tags": [{"TagKey": SPENT, "TagValue": "1"}]})
    assert err.value.code == "AuthFailure.SignatureFailure"
    assert job_tags(emu, job)[0] == {}


def test_a_tag_call_with_the_wrong_key_fails_the_signature_check(emu: Emulator) -> None:
    job = emu.add_failed_job("a")
    with pytest.raises(TencentCloudSDKException) as err:
        client(emu, "tag", key="wrong").call_json("TagResources", {
            "ResourceList": [emu.resource(job)], "Tags": [{"TagKey": SPENT, "TagValue": "1"}]})
    assert err.value.code == "AuthFailure.SignatureFailure"


def test_read_only_tags_answer_an_error_and_change_nothing() -> None:
    with emulator(tags_writable=False) as emu:
        job = emu.add_failed_job("a", tags={"team": "vfx"})
        params = {"ResourceList": [emu.resource(job)], "Tags": [{"TagKey": SPENT, "TagValue": "1"}]}
        refused = "InvalidParameterValue.ServiceTypeInvalid"
        assert error_code(emu, "TagResources", params, "tag") == refused
        modify = {"Resource": emu.resource(job), "ReplaceTags": [{"TagKey": SPENT, "TagValue": "1"}]}
        assert error_code(emu, "ModifyResourceTags", modify, "tag") == refused
        assert job_tags(emu, job)[0] == {"team": "vfx"}


def test_read_only_tags_can_answer_success_with_every_job_in_failed_resources() -> None:
    with emulator(tags_writable=False, tag_refusal="failed-resources") as emu:
        job = emu.add_failed_job("a")
        answer = tag(emu, [job], {SPENT: "1"})
        assert [(f["Resource"], f["Code"]) for f in answer["FailedResources"]] == [
            (emu.resource(job), "InvalidParameterValue.ServiceTypeInvalid")]
        assert job_tags(emu, job)[0] == {}


def test_tag_calls_are_rate_limited_at_twenty_a_second() -> None:
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=1.0) as emu:
        assert {a: emu.limiter.limits[a] for a in ("TagResources", "GetResources")} == \
            {"TagResources": 20, "GetResources": 20}
        job = emu.add_failed_job("a")
        codes = []
        for _ in range(40):
            try:
                tag(emu, [job], {SPENT: "1"})
                codes.append("ok")
            except TencentCloudSDKException as e:
                codes.append(str(e.code))
        assert "RequestLimitExceeded" in codes and codes[:20] == ["ok"] * 20


def test_a_lost_answer_on_tag_resources_writes_the_tags_yet_the_caller_sees_an_error() -> None:
    faults = Faults(rate=1.0, kinds=("lost_answer",), actions=("TagResources",))
    with emulator(faults=faults) as emu:
        job = emu.add_failed_job("a")
        with pytest.raises(TencentCloudSDKException):
            tag(emu, [job], {SPENT: "1"})
        assert job_tags(emu, job)[0] == {SPENT: "1"}
