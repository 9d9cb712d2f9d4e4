"""Tencent's Tag service (tag.tencentcloudapi.com, 2018-08-13) for the emulator's Batch jobs: a job's
tags written here show in its `Tags` in DescribeJob(s), as tags bound through the Tag service do.

Resources are named by the six-segment form `qcs::batch:<region>:uin/<uin>:job/<job id>`. Only Batch
jobs live in the emulator: any other resource is reported in FailedResources. Shapes and codes
follow the SDK's `tag/v20180813` models and errorcodes (see emulator/README.md, "Tags")."""

from __future__ import annotations

import re
from typing import Any

from emulator.api import Actions, ApiError
from emulator.fleet import Fleet, Job

VERSION = "2018-08-13"
SERVICE = "tag"
LIMITS: dict[str, float] = {"TagResources": 20, "UnTagResources": 20, "ModifyResourceTags": 20,
                            "GetResources": 20}
MAX_RESOURCES = 10  # ResourceList.N, N in 0..9
MAX_TAGS_PER_CALL = 10  # Tags.N, N in 0..9
MAX_TAGS_PER_RESOURCE = 50
RESERVED_PREFIXES = ("qcloud", "tencent", "project")
# Letters (any script), digits, space and + - = . _ : / @ ( ) [ ], plus their full-width brackets.
_KEY = re.compile("^[\\w +\\-=.:/@()\\[\\]\uff08\uff09\u3010\u3011]+$")


def resource_name(region: str, uin: str, job_id: str) -> str:
    return f"qcs::batch:{region}:uin/{uin}:job/{job_id}"


def _strings(params: dict[str, Any], key: str, most: int) -> list[str]:
    values = params.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ApiError("InvalidParameter", f"{key} must be a non-empty list of strings")
    if len(values) > most:
        raise ApiError("LimitExceeded.ResourceNumPerRequest", f"{key} takes at most {most} entries")
    return values


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ApiError("InvalidParameterValue.TagKeyEmpty", "a tag key cannot be empty")
    if key.lower().startswith(RESERVED_PREFIXES):
        raise ApiError("InvalidParameterValue.ReservedTagKey",
                       "the tag keys qcloud, tencent and project are reserved")
    if len(key) > 127:
        raise ApiError("InvalidParameterValue.TagKeyLengthExceeded", "a tag key has at most 127 characters")
    if not _KEY.match(key):
        raise ApiError("InvalidParameterValue.TagKeyCharacterIllegal",
                       f"the tag key {key!r} has illegal characters")
    return key


def _check_value(value: object) -> str:
    if not isinstance(value, str):
        raise ApiError("InvalidParameter.Tag", "a tag value must be a string")
    if len(value) > 255:
        raise ApiError("InvalidParameterValue.TagValueLengthExceeded",
                       "a tag value has at most 255 characters")
    if value and not _KEY.match(value):
        raise ApiError("InvalidParameterValue.TagValueCharacterIllegal",
                       f"the tag value {value!r} has illegal characters")
    return value


def _tags(params: dict[str, Any], key: str) -> dict[str, str]:
    tags = params.get(key) or []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS_PER_CALL:
        raise ApiError("InvalidParameter.Tag", f"{key} is a list of at most {MAX_TAGS_PER_CALL} tags")
    out: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, dict):
            raise ApiError("InvalidParameter.Tag", f"{key} holds objects with TagKey and TagValue")
        out[_check_key(tag.get("TagKey"))] = _check_value(tag.get("TagValue", ""))
    return out


class TagApi(Actions):
    def __init__(self, fleet: Fleet, region: str, uin: str) -> None:
        super().__init__(fleet, {
            "TagResources": self.tag_resources, "UnTagResources": self.untag_resources,
            "ModifyResourceTags": self.modify_resource_tags, "GetResources": self.get_resources,
        })
        self.region, self.uin = region, uin

    def resource(self, job_id: str) -> str:
        return resource_name(self.region, self.uin, job_id)

    # --- resolving six-segment names ----------------------------------------------------------
    def _job(self, resource: str) -> Job:
        """The job a name denotes, or an ApiError with the code the Tag service gives for it."""
        parts = resource.split(":")
        if len(parts) != 6 or parts[0] != "qcs" or parts[1] != "" or "/" not in parts[5]:
            raise ApiError("InvalidParameterValue.ResourceDescriptionError",
                           f"{resource!r} is not a six-segment resource description")
        _, _, service, region, account, tail = parts
        prefix, _, job_id = tail.partition("/")
        if service != "batch":
            raise ApiError("InvalidParameterValue.ResourceIdInvalid",
                           f"no {service} resource {tail!r} exists (the emulator holds Batch jobs only)")
        if account != f"uin/{self.uin}":
            raise ApiError("InvalidParameterValue.UinInvalid", f"{account!r} is not this account")
        if prefix != "job":
            raise ApiError("InvalidParameterValue.ResourcePrefixInvalid",
                           f"{prefix!r} is not a taggable prefix")
        job = self.fleet.jobs.get(job_id)
        if job is None or region != self.region:
            raise ApiError("InvalidParameterValue.ResourceIdInvalid",
                           f"the resource {resource} does not exist")
        return job

    def _writable(self, resources: list[str]) -> tuple[list[tuple[str, Job]], list[dict[str, str]]]:
        """The jobs that may be written, and FailedResources for the rest."""
        ok: list[tuple[str, Job]] = []
        failed: list[dict[str, str]] = []
        for resource in resources:
            try:
                job = self._job(resource)
            except ApiError as err:
                if err.code == "InvalidParameterValue.ResourceDescriptionError":
                    raise
                failed.append({"Resource": resource, "Code": err.code, "Message": err.message})
                continue
            ok.append((resource, job))
        if ok and not self.fleet.behaviour.tags_writable:
            refusal = ("InvalidParameterValue.ServiceTypeInvalid",
                       "Batch job tags cannot be changed through the Tag service")
            if self.fleet.behaviour.tag_refusal == "error":
                raise ApiError(*refusal)
            failed += [{"Resource": r, "Code": refusal[0], "Message": refusal[1]} for r, _ in ok]
            ok = []
        return ok, failed

    # --- actions ---------------------------------------------------------------------------------
    def tag_resources(self, params: dict[str, Any]) -> dict[str, Any]:
        resources = _strings(params, "ResourceList", MAX_RESOURCES)
        tags = _tags(params, "Tags")
        if not tags:
            raise ApiError("InvalidParameter.Tag", "Tags must name at least one tag")
        ok, failed = self._writable(resources)
        for resource, job in ok:
            if len(set(job.tags) | set(tags)) > MAX_TAGS_PER_RESOURCE:
                failed.append({"Resource": resource, "Code": "LimitExceeded.ResourceAttachedTags",
                               "Message": f"a resource holds at most {MAX_TAGS_PER_RESOURCE} tags"})
                continue
            job.tags.update(tags)  # an existing key takes the new value
        return {"FailedResources": failed}

    def untag_resources(self, params: dict[str, Any]) -> dict[str, Any]:
        resources = _strings(params, "ResourceList", MAX_RESOURCES)
        keys = _strings(params, "TagKeys", MAX_TAGS_PER_CALL)
        ok, failed = self._writable(resources)
        for _, job in ok:
            for key in keys:
                job.tags.pop(key, None)
        return {"FailedResources": failed}

    def modify_resource_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = params.get("Resource")
        if not isinstance(resource, str) or not resource:
            raise ApiError("MissingParameter", "Resource is required")
        replace = _tags(params, "ReplaceTags")
        delete = params.get("DeleteTags") or []
        if not isinstance(delete, list) or not all(isinstance(d, dict) for d in delete):
            raise ApiError("InvalidParameter.Tag", "DeleteTags holds objects with TagKey")
        delete_keys = {_check_key(d.get("TagKey")) for d in delete}
        if delete_keys & set(replace):
            raise ApiError("InvalidParameterValue.DeleteTagsParamError",
                           "DeleteTags cannot name a key that ReplaceTags sets")
        job = self._job(resource)
        _, failed = self._writable([resource])
        if failed:
            raise ApiError(failed[0]["Code"], failed[0]["Message"])
        if len((set(job.tags) - delete_keys) | set(replace)) > MAX_TAGS_PER_RESOURCE:
            raise ApiError("LimitExceeded.ResourceAttachedTags",
                           f"a resource holds at most {MAX_TAGS_PER_RESOURCE} tags")
        for key in delete_keys:
            job.tags.pop(key, None)
        job.tags.update(replace)
        return {}

    def get_resources(self, params: dict[str, Any]) -> dict[str, Any]:
        most = params.get("MaxResults", 50)
        if not isinstance(most, int) or not 1 <= most <= 200:
            raise ApiError("InvalidParameter", "MaxResults is 1 to 200")
        token = params.get("PaginationToken") or "0"
        if not isinstance(token, str) or not token.isdigit():
            raise ApiError("InvalidParameterValue.OffsetInvalid",
                           "PaginationToken is not one this service gave")
        filters = params.get("TagFilters") or []
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            raise ApiError("InvalidParameterValue.TagFilters", "TagFilters holds objects with TagKey")
        if "ResourceList" in params:
            jobs = []
            for resource in _strings(params, "ResourceList", MAX_RESOURCES):
                try:
                    jobs.append(self._job(resource))
                except ApiError as err:
                    if err.code == "InvalidParameterValue.ResourceDescriptionError":
                        raise
            most = len(jobs) or 1  # with ResourceList every match is returned
        else:
            jobs = list(self.fleet.jobs.values())
        for flt in filters:
            key, values = flt.get("TagKey"), flt.get("TagValue") or []
            jobs = [j for j in jobs if key in j.tags and (not values or j.tags[key] in values)]
        if filters or "ResourceList" not in params:
            jobs = [j for j in jobs if j.tags]  # the Tag service lists tagged resources only
        start = int(token)
        page = jobs[start:start + most]
        following = str(start + most) if start + most < len(jobs) else ""
        return {"PaginationToken": following, "ResourceTagMappingList": [
            {"Resource": self.resource(j.job_id),
             "Tags": [{"TagKey": k, "TagValue": v} for k, v in j.tags.items()]} for j in page]}
