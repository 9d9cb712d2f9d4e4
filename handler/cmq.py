"""TDMQ-CMQ's data-flow API, as the queue pull needs it: BatchReceiveMessage and BatchDeleteMessage.

The data-flow API is not part of Tencent Cloud API 3.0 (the `tdmq` SDK has no receive action): it is
a form POST to `/v2/index.php` at a per-region address, signed with HmacSHA256 (or SHA1) over
`METHOD + host + path + "?" + sorted k=v pairs`, base64. Tencent's own Python client for it
(`qcloud-cmq-sdk`, 0.1, Python 2; a 2020 Python 3 port) is unmaintained, so this is ~240 lines of
ours on the standard library: no `requests` import on the function's cold path.
Sources: https://cloud.tencent.com/document/product/1496/61039 (data-flow API),
https://www.tencentcloud.com/document/product/1111/46418 (BatchReceiveMessage),
https://www.tencentcloud.com/document/product/406/5906 (the signature).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handler.gateway import Credentials, credentials_from_env

PATH = "/v2/index.php"
MAX_BATCH = 16  # BatchReceiveMessage / BatchDeleteMessage take at most 16
NO_MESSAGE = 7000  # the code an empty queue answers with
CLIENT_NAME = "batch-autoretry"

# The region part of the data-flow addresses (TDMQ for CMQ console, "API request address"):
# public https://cmq-<r>.public.tencenttdmq.com, VPC http://<r>.mqadapter.cmq.tencentyun.com.
REGION_CODES: dict[str, str] = {
    "ap-guangzhou": "gz", "ap-shanghai": "sh", "ap-beijing": "bj", "ap-chengdu": "cd",
    "ap-chongqing": "cq", "ap-nanjing": "nj", "ap-hongkong": "hk", "ap-singapore": "sg",
    "ap-shanghai-fsi": "shjr", "ap-shenzhen-fsi": "szjr", "ap-beijing-fsi": "bjjr",
    "ap-mumbai": "in", "ap-seoul": "kr", "ap-tokyo": "jp", "ap-bangkok": "th", "ap-jakarta": "jkt",
    "na-siliconvalley": "usw", "na-ashburn": "use", "na-toronto": "ca", "eu-frankfurt": "de",
    "sa-saopaulo": "sao",
}


class QueueError(Exception):
    """The data-flow API refused or could not be reached; `code` is its numeric code, or a name
    for client-side failures (`network`, `http_<status>`, `malformed`, `no_credentials`)."""

    def __init__(self, action: str, code: int | str, message: str, request_id: str = "",
                 answer: dict[str, Any] | None = None) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action, self.code, self.message, self.request_id = action, code, message, request_id
        self.answer = answer or {}


@dataclass(frozen=True)
class QueueMessage:
    msg_id: str
    body: str
    receipt_handle: str  # changes on every receive; only the latest one deletes
    receive_count: int  # dequeueCount: how often it was received, this time included
    enqueue_time: int = 0


def endpoint_for(region: str, network: str) -> str:
    """The data-flow URL for a region: `vpc` (SCF in a VPC, free) or `public` (billed traffic)."""
    code = REGION_CODES.get(region)
    if code is None:
        raise ValueError(f"no known TDMQ-CMQ address for region {region!r}: set "
                         "AUTORETRY_QUEUE_ENDPOINT (the console shows it under Queue Service)")
    if network == "vpc":
        return f"http://{code}.mqadapter.cmq.tencentyun.com"
    if network == "public":
        return f"https://cmq-{code}.public.tencenttdmq.com"
    raise ValueError(f"AUTORETRY_QUEUE_NETWORK={network!r}: expected vpc or public")


def string_to_sign(method: str, host: str, path: str, params: Mapping[str, Any]) -> str:
    pairs = "&".join(f"{k.replace('_', '.')}={params[k]}" for k in sorted(params))
    return f"{method.upper()}{host}{path}?{pairs}"


def sign(secret_key: str, text: str, method: str = "HmacSHA256") -> str:
    digest = hashlib.sha256 if method == "HmacSHA256" else hashlib.sha1
    return base64.b64encode(hmac.new(secret_key.encode(), text.encode(), digest).digest()).decode()


class QueueClient:
    """One queue on the data-flow API. Keeps one connection alive, which one call at a time uses:
    threads sharing a client (pull ticks running at once in one process) take turns."""

    def __init__(self, url: str, queue: str, *,
                 credentials: Callable[[], Credentials | None] = credentials_from_env,
                 timeout_s: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"queue endpoint {url!r}: expected http(s)://host[:port]")
        self.scheme, self.host, self.queue = parts.scheme, parts.netloc, queue
        self.timeout_s, self._credentials, self._clock = timeout_s, credentials, clock
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # held for a whole request and its answer

    def __repr__(self) -> str:
        return f"QueueClient({self.scheme}://{self.host}, queue={self.queue!r})"

    def receive(self, max_messages: int = MAX_BATCH, wait_s: int = 0) -> list[QueueMessage]:
        """Up to 16 visible messages, now hidden for the queue's visibility timeout; [] if none."""
        params = {"queueName": self.queue, "numOfMsg": max(1, min(max_messages, MAX_BATCH)),
                  "pollingWaitSeconds": max(0, wait_s)}
        answer = self._call("BatchReceiveMessage", params, extra_wait_s=wait_s)
        if answer is None:
            return []
        messages = []
        for m in answer.get("msgInfoList") or []:
            messages.append(QueueMessage(str(m.get("msgId", "")), str(m.get("msgBody", "")),
                                         str(m.get("receiptHandle", "")),
                                         int(m.get("dequeueCount") or 0),
                                         int(m.get("enqueueTime") or 0)))
        return messages

    def delete(self, receipt_handles: list[str]) -> dict[str, str]:
        """Delete by receipt handle; returns {handle: reason} for the ones that were not deleted
        (a stale handle: the message was received again since, and will come back)."""
        failed: dict[str, str] = {}
        for start in range(0, len(receipt_handles), MAX_BATCH):
            chunk = receipt_handles[start:start + MAX_BATCH]
            params: dict[str, Any] = {"queueName": self.queue}
            params.update({f"receiptHandle.{i}": h for i, h in enumerate(chunk, 1)})
            try:
                self._call("BatchDeleteMessage", params)
            except QueueError as e:
                errors = _error_list(e)
                if errors is None:
                    failed.update({h: f"{e.code}: {e.message}" for h in chunk})
                else:
                    failed.update(errors)
        return failed

    def _call(self, action: str, params: dict[str, Any], extra_wait_s: int = 0
              ) -> dict[str, Any] | None:
        creds = self._credentials()
        if creds is None:
            raise QueueError(action, "no_credentials", "no Tencent Cloud credentials")
        signed: dict[str, Any] = dict(params)
        signed.update({"Action": action, "SecretId": creds.secret_id, "Nonce": random.randint(1, 2**31),
                       "Timestamp": int(self._clock()), "SignatureMethod": "HmacSHA256",
                       "RequestClient": CLIENT_NAME})
        if creds.token:
            signed["Token"] = creds.token
        signed["Signature"] = sign(creds.secret_key, string_to_sign("POST", self.host, PATH, signed))
        body = urllib.parse.urlencode(signed).encode()
        status, raw = self._post(action, body, self.timeout_s + extra_wait_s)
        if status != 200:
            raise QueueError(action, f"http_{status}", raw[:200].decode("utf-8", "replace"))
        try:
            answer = json.loads(raw)
            code = int(answer.get("code", -1))
        except (ValueError, TypeError, AttributeError):
            raise QueueError(action, "malformed", "the answer is not the API's JSON") from None
        if code == NO_MESSAGE and action.endswith("ReceiveMessage"):
            return None
        if code != 0:
            raise QueueError(action, code, str(answer.get("message", ""))[:300],
                             str(answer.get("requestId", "")), answer)
        result: dict[str, Any] = answer
        return result

    def _post(self, action: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Host": self.host}
        with self._lock:
            for attempt in (1, 2):  # a kept-alive connection the server closed gets one fresh try
                conn = self._connection(timeout_s)
                try:
                    conn.request("POST", PATH, body=body, headers=headers)
                    response = conn.getresponse()
                    return response.status, response.read()
                except (OSError, http.client.HTTPException) as e:
                    self._drop()
                    fresh_failure = attempt == 2 or not isinstance(
                        e, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
                    if fresh_failure:
                        raise QueueError(action, "network",
                                         f"{type(e).__name__}: {e}"[:300]) from None
        raise AssertionError("unreachable")

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = kind(self.host, timeout=timeout_s)
        self._conn.timeout = timeout_s
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout_s)
        return self._conn

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _error_list(e: QueueError) -> dict[str, str] | None:
    errors = e.answer.get("errorList")
    if not isinstance(errors, list):
        return None
    return {str(x.get("receiptHandle", "")): f"{x.get('code')}: {x.get('message', '')}"
            for x in errors if isinstance(x, dict)}


_QUEUE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class QueueSettings:
    queue: str
    url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, queue: str | None = None
                 ) -> QueueSettings:
        """`AUTORETRY_QUEUE`, and `AUTORETRY_QUEUE_ENDPOINT` or the address derived from the first
        of `AUTORETRY_REGION` and `AUTORETRY_QUEUE_NETWORK` (`vpc` on SCF, `public` elsewhere)."""
        env = os.environ if env is None else env
        name = (queue or env.get("AUTORETRY_QUEUE", "")).strip()
        if not _QUEUE_NAME.match(name):
            raise ValueError(f"AUTORETRY_QUEUE={name!r}: expected a queue name (a letter, then up "
                             "to 63 letters, digits, - or _)")
        default_network = "vpc" if env.get("TENCENTCLOUD_RUNENV") == "SCF" else "public"
        network = (env.get("AUTORETRY_QUEUE_NETWORK") or default_network).strip().lower()
        endpoint = env.get("AUTORETRY_QUEUE_ENDPOINT", "").strip()
        if endpoint:
            if not re.match(r"^(https?://)?[A-Za-z0-9.\-]+(:\d{1,5})?/?$", endpoint):
                raise ValueError(f"AUTORETRY_QUEUE_ENDPOINT={endpoint!r}: expected host[:port] or "
                                 "http(s)://host[:port]")
            # The VPC-internal address speaks plain http only; the public one https.
            scheme = "" if "://" in endpoint else ("http://" if network == "vpc" else "https://")
            return cls(name, scheme + endpoint.rstrip("/"))
        region = (env.get("AUTORETRY_REGION") or "ap-guangzhou").split(",")[0].strip()
        return cls(name, endpoint_for(region, network))

    def client(self, timeout_s: float = 5.0) -> QueueClient:
        return QueueClient(self.url, self.queue, timeout_s=timeout_s)
