"""The Batch API as the retrier needs it: the SDK client, credentials, and errors sorted into the
few kinds the retrier acts on. It knows nothing of retry rules.

The SDK's own retryer is not used (it re-sends after a success and sleeps after the last try); the
retrier's ledger paces and repeats calls instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from handler.jobs import JobDetail, JobView, TaskInstanceView, TaskView

if TYPE_CHECKING:
    from tencentcloud.batch.v20170312.batch_client import BatchClient

API_VERSION = "2017-03-12"
MAX_IDS_PER_CALL = 100  # RetryJobs and DescribeJobs take at most 100 job ids
MAX_INSTANCES_PER_PAGE = 1000  # DescribeTask's largest Limit
MAX_TASK_PAGES = 50  # bounds one failure's DescribeTask calls, whatever total the answer claims

# Documented limits per action (the lowest where Tencent's pages disagree), requests per second.
RATE_LIMITS: dict[str, float] = {
    "RetryJobs": 2.0,
    "DescribeJobs": 2.0,
    "DescribeJob": 2.0,
    "DescribeTask": 3.0,
}
# Calls only an operator's command makes (`python -m handler terminate`), never the function: its
# role is granted exactly RATE_LIMITS' actions.
OPERATOR_RATE_LIMITS: dict[str, float] = {
    "TerminateJob": 2.0,
}


class ErrorKind(StrEnum):
    THROTTLED = "throttled"  # RequestLimitExceeded*: nothing was done; try later
    TRANSIENT = "transient"  # certainly not applied (connection refused, auth, internal read errors)
    AMBIGUOUS = "ambiguous"  # a write may have been applied (timeout, reset, 5xx, InternalError)
    REJECTED = "rejected"  # the service refused these ids (not FAILED, unknown, malformed)


class ApiError(Exception):
    def __init__(self, action: str, kind: ErrorKind, code: str, message: str,
                 request_id: str | None = None) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action, self.kind, self.code = action, kind, code
        self.message, self.request_id = message, request_id


_REJECTED_PREFIXES = ("UnsupportedOperation", "ResourceNotFound", "InvalidParameter",
                      "InvalidFilter", "MissingParameter", "UnknownParameter")
_NOT_SENT_MARKERS = ("NewConnectionError", "Connection refused", "ConnectTimeout",
                     "NameResolutionError", "Failed to resolve", "Failed to establish")


def classify(action: str, code: str, message: str) -> ErrorKind:
    """Sort an SDK error. For a read, anything unclear is transient; for RetryJobs it is ambiguous,
    because it may have been applied and must never be repeated blindly."""
    writes = action == "RetryJobs"
    if code.startswith("RequestLimitExceeded"):
        return ErrorKind.THROTTLED
    if code.startswith(_REJECTED_PREFIXES):
        return ErrorKind.REJECTED
    if code.startswith(("AuthFailure", "UnauthorizedOperation", "InvalidAction", "NoSuchVersion",
                        "InvalidCredential", "ClientParamsError")):
        return ErrorKind.TRANSIENT  # our configuration; nothing reached the job
    if code == "ClientNetworkError":
        if any(m in message for m in _NOT_SENT_MARKERS):
            return ErrorKind.TRANSIENT
        return ErrorKind.AMBIGUOUS if writes else ErrorKind.TRANSIENT
    return ErrorKind.AMBIGUOUS if writes else ErrorKind.TRANSIENT


@dataclass(frozen=True)
class Credentials:
    secret_id: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Credentials(secret_id={self.secret_id[:4]}…)"


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials | None:
    """SCF role credentials (`TENCENTCLOUD_SECRETID`, no underscore, with a session token) first,
    then `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY`. The SDK's own env reader misses the
    former, so it is not used."""
    env = os.environ if env is None else env
    sid, skey = env.get("TENCENTCLOUD_SECRETID"), env.get("TENCENTCLOUD_SECRETKEY")
    if sid and skey:
        return Credentials(sid.strip(), skey.strip(), (env.get("TENCENTCLOUD_SESSIONTOKEN") or None))
    sid, skey = env.get("TENCENTCLOUD_SECRET_ID"), env.get("TENCENTCLOUD_SECRET_KEY")
    if sid and skey:
        token = env.get("TENCENTCLOUD_SESSION_TOKEN") or env.get("TENCENTCLOUD_SESSIONTOKEN")
        return Credentials(sid.strip(), skey.strip(), token or None)
    return None


class BatchGateway:
    def __init__(
        self,
        *,
        endpoint: str | None = None,
        protocol: str = "https",
        credentials: Callable[[], Credentials | None] = credentials_from_env,
        timeout_s: float = 5.0,
    ) -> None:
        self.endpoint, self.protocol, self.timeout_s = endpoint, protocol, timeout_s
        self._credentials = credentials
        self._clients: dict[str, tuple[Credentials, BatchClient]] = {}

    def _client(self, region: str) -> BatchClient:
        creds = self._credentials()
        if creds is None:
            raise ApiError("-", ErrorKind.TRANSIENT, "NoCredentials",
                           "no Tencent Cloud credentials: bind an execution role (SCF) or set "
                           "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY")
        cached = self._clients.get(region)
        if cached is not None and cached[0] == creds:
            return cached[1]
        # Imported here: the SDK pulls in `requests`, most of the function's import time.
        from tencentcloud.batch.v20170312.batch_client import BatchClient
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        http = HttpProfile(endpoint=self.endpoint or None, protocol=self.protocol,
                           reqTimeout=self.timeout_s)
        profile = ClientProfile(httpProfile=http, language="en-US")
        client = BatchClient(Credential(creds.secret_id, creds.secret_key, creds.token), region,
                             profile)
        # Role credentials rotate: a new set in the environment gets a new client.
        self._clients[region] = (creds, client)
        return client

    def _call(self, region: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        client = self._client(region)
        try:
            answer: dict[str, Any] = client.call_json(action, params)
        except TencentCloudSDKException as e:
            code, message = str(e.get_code() or "Unknown"), _text(e.get_message())
            raise ApiError(action, classify(action, code, message), code, message,
                           e.get_request_id()) from None
        response = answer.get("Response")
        if not isinstance(response, dict):
            raise ApiError(action, classify(action, "MalformedResponse", ""), "MalformedResponse",
                           "the answer has no Response object")
        return response

    def describe_jobs(self, region: str, job_ids: list[str]) -> dict[str, JobView]:
        """The current view of each job that exists, by id (at most 100 ids)."""
        if not job_ids:
            return {}
        _check_batch(job_ids)
        resp = self._call(region, "DescribeJobs", {"JobIds": job_ids, "Limit": MAX_IDS_PER_CALL})
        views = [JobView.model_validate(j) for j in resp.get("JobSet") or []]
        return {v.JobId: v for v in views}

    def list_jobs(self, region: str, state: str, offset: int, limit: int = MAX_IDS_PER_CALL
                  ) -> tuple[list[JobView], int]:
        """One page of jobs in `state`, newest first, and the total count."""
        resp = self._call(region, "DescribeJobs", {
            "Filters": [{"Name": "job-state", "Values": [state]}],
            "Offset": offset, "Limit": limit})
        views = [JobView.model_validate(j) for j in resp.get("JobSet") or []]
        return views, int(resp.get("TotalCount") or 0)

    def describe_job(self, region: str, job_id: str) -> JobDetail:
        """DescribeJob, plus DescribeTask for each failed task (exit codes, instance reasons)."""
        resp = self._call(region, "DescribeJob", {"JobId": job_id})
        detail = JobDetail.model_validate(resp)
        detail.TaskSet = [self.describe_task(region, job_id, t.TaskName) if t.failed else t
                          for t in detail.TaskSet]
        return detail

    def describe_task(self, region: str, job_id: str, task_name: str) -> TaskView:
        """DescribeTask with every instance: pages of up to 1,000 (`Offset`/`Limit`) until
        `TaskInstanceTotalCount` are read, or a page comes back empty (at most MAX_TASK_PAGES)."""
        first: TaskView | None = None
        instances: list[TaskInstanceView] = []
        for _ in range(MAX_TASK_PAGES):
            page = TaskView.model_validate(self._call(region, "DescribeTask", {
                "JobId": job_id, "TaskName": task_name, "Offset": len(instances),
                "Limit": MAX_INSTANCES_PER_PAGE}))
            first = first or page
            instances += page.TaskInstanceSet
            total = page.TaskInstanceTotalCount
            if not page.TaskInstanceSet or total is None or len(instances) >= total:
                break
        assert first is not None
        first.TaskInstanceSet = instances
        return first

    def retry_jobs(self, region: str, job_ids: list[str]) -> str:
        """RetryJobs for up to 100 FAILED jobs; returns the RequestId."""
        _check_batch(job_ids)
        resp = self._call(region, "RetryJobs", {"JobIds": job_ids})
        return str(resp.get("RequestId", ""))


    def terminate_job(self, region: str, job_id: str) -> str:
        """TerminateJob: every instance of the job is terminated, asynchronously, and ends FAILED.
        Refused (UnsupportedOperation) while the job is SUBMITTED; no effect once it SUCCEEDed.
        Returns the RequestId."""
        resp = self._call(region, "TerminateJob", {"JobId": job_id})
        return str(resp.get("RequestId", ""))


def _check_batch(job_ids: list[str]) -> None:
    if len(job_ids) > MAX_IDS_PER_CALL:
        raise ValueError(f"at most {MAX_IDS_PER_CALL} job ids per call, got {len(job_ids)}")


def _text(message: object) -> str:
    if isinstance(message, bytes):
        return message.decode("utf-8", "replace")[:500]
    return str(message)[:500]
