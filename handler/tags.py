"""A memory a ledger loss cannot erase: the retries a job spent, written onto the job itself.

After each applied RetryJobs the function tags each retried job `batch-autoretry/retries-spent=<n>`
through Tencent's Tag service (`TagResources`, 2018-08-13, on `qcs::batch:<region>:uin/<uin>:job/<id>`),
and reads it back from the `Tags` that DescribeJobs already returns: a job's spend is the larger of
the ledger's count and the tag's. A ledger that forgot (a failover that lost writes) then cannot
hand a job a fresh budget.

Whether Batch jobs accept tags written after submission is not documented (emulator/README.md,
"Tags"). So this is safe either way: a refusal turns the memory off for this instance, says so once,
and the ledger's identity check (docs/ledger.md) is what stands between a wipe and a fresh budget.
Writes happen on a thread of their own, never between a claim and its call: a retry is never
delayed by them; `settle` waits for them (bounded) before the invocation returns.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from handler.gateway import Credentials, credentials_from_env
from handler.observe import Observer

TAG_KEY = "batch-autoretry/retries-spent"
VERSION = "2018-08-13"
RATE_PER_S = 20.0  # TagResources: 20 requests a second
MAX_RESOURCES = 10  # TagResources takes at most 10 resources a call
# The Tag service's answers when it does not take this kind of resource.
REFUSED = ("InvalidParameterValue.ServiceTypeInvalid", "InvalidParameterValue.ResourcePrefixInvalid",
           "InvalidParameterValue.ResourceIdInvalid", "UnsupportedOperation")
TRIES = 3


def spent_on(tags: Mapping[str, str]) -> int:
    """The retries a job's tags say it spent (0 if none, or unreadable)."""
    raw = str(tags.get(TAG_KEY, "")).strip()
    return int(raw) if raw.isdigit() else 0


class TagMemory:
    """Writes `TAG_KEY` onto retried jobs, in the background, paced at the Tag service's rate."""

    def __init__(self, uin: str, *, endpoint: str | None = None, protocol: str = "https",
                 credentials: Callable[[], Credentials | None] = credentials_from_env,
                 timeout_s: float = 5.0, rate_per_s: float = RATE_PER_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.uin, self.endpoint, self.protocol = uin, endpoint, protocol
        self._credentials, self.timeout_s = credentials, timeout_s
        self.interval = 1.0 / rate_per_s
        self.sleep = sleep
        self.writable = True
        self.observer = Observer(correlation_id="tag-memory")
        self._work: queue.Queue[tuple[str, dict[str, int]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def resource(self, region: str, job_id: str) -> str:
        return f"qcs::batch:{region}:uin/{self.uin}:job/{job_id}"

    def remember(self, region: str, spent: dict[str, int]) -> None:
        """Write each job's spend onto it, soon; returns at once."""
        if not self.writable or not spent:
            return
        self._work.put((region, dict(spent)))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="autoretry-tags")
                self._thread.start()

    def settle(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the writes asked so far; True if none is left."""
        end = time.monotonic() + max(0.0, timeout_s)
        while self._work.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.01)
        return not self._work.unfinished_tasks

    def _run(self) -> None:
        while True:
            try:
                region, spent = self._work.get(timeout=1.0)
            except queue.Empty:
                with self._lock:
                    # Decided under the lock `remember` takes after its put: work put before this
                    # is seen here; work put after finds no writer, and starts one.
                    if self._work.empty():
                        self._thread = None
                        return
                continue
            try:
                if self.writable:
                    self._write(region, spent)
            finally:
                self._work.task_done()

    def _write(self, region: str, spent: dict[str, int]) -> None:
        by_value: dict[int, list[str]] = defaultdict(list)
        for job_id, n in spent.items():
            by_value[n].append(job_id)
        for n, jobs in sorted(by_value.items()):
            for i in range(0, len(jobs), MAX_RESOURCES):
                if not self.writable:
                    return
                self._tag(region, jobs[i:i + MAX_RESOURCES], n)
                self.sleep(self.interval)

    def _tag(self, region: str, jobs: list[str], n: int) -> None:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        params = {"ResourceList": [self.resource(region, j) for j in jobs],
                  "Tags": [{"TagKey": TAG_KEY, "TagValue": str(n)}]}
        for attempt in range(TRIES):
            try:
                answer = self._client(region).call_json("TagResources", params)
            except TencentCloudSDKException as e:
                if str(e.code) in REFUSED:
                    return self._refused(str(e.code))
                if attempt + 1 == TRIES:
                    self.observer.warning("could not tag retried jobs; the ledger still counts",
                                          code=str(e.code), jobs=len(jobs))
                    return None
                self.sleep(self.interval * 2 ** (attempt + 1))
                continue
            failed = (answer.get("Response") or {}).get("FailedResources") or []
            codes = {str(f.get("Code")) for f in failed if isinstance(f, dict)}
            if codes & set(REFUSED):
                return self._refused(sorted(codes & set(REFUSED))[0])
            return None
        return None

    def _refused(self, code: str) -> None:
        self.writable = False
        self.observer.error("Batch jobs do not take tags from the Tag service here: the retries a "
                            "job spent live in the ledger only (see docs/ledger.md)", code=code)

    def _client(self, region: str) -> Any:
        creds = self._credentials()
        if creds is None:
            from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
                TencentCloudSDKException,
            )

            raise TencentCloudSDKException("NoCredentials", "no Tencent Cloud credentials")
        cached = self._clients.get(region)
        if cached is not None and cached[0] == creds:
            return cached[1]
        from tencentcloud.common.common_client import CommonClient
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        http = HttpProfile(endpoint=self.endpoint or "tag.tencentcloudapi.com",
                           protocol=self.protocol, reqTimeout=self.timeout_s)
        client = CommonClient("tag", VERSION, Credential(creds.secret_id, creds.secret_key,
                                                         creds.token),
                              region, ClientProfile(httpProfile=http))
        self._clients[region] = (creds, client)
        return client
