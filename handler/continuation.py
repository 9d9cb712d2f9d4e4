"""Draining where nobody waits: the function asks its platform to run it again, asynchronously.

An HTTP push is answered within seconds (the topic gives up after ~15 s and pushes again), so an
invocation that still has work due when its answer is owed hands the rest to a continuation: an
asynchronous invocation of the same function (SCF `Invoke` with `InvocationType=Event`, Lambda's
`InvocationType=Event`), whose event is `CONTINUE_EVENT`. The drainer lease keeps it to one drainer
at a time; the timer and the queue pull drain too, so a continuation that never starts delays
retries by a timer period at most, and loses nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from handler.gateway import Credentials, credentials_from_env

# The event a continuation is invoked with; ingress knows it as a trigger of its own.
CONTINUE_EVENT: dict[str, Any] = {"autoretry": "continue"}


class ContinuationError(RuntimeError):
    """The platform refused or could not be asked; the message names no credentials."""


class Continuation(Protocol):
    def start(self) -> None:
        """Ask for one asynchronous run of the function with CONTINUE_EVENT; return at once."""
        ...


class ScfContinuation:
    """SCF's `Invoke` API (2018-04-16), signed with the function's role credentials."""

    def __init__(self, function_name: str, namespace: str, region: str, qualifier: str | None,
                 *, endpoint: str | None = None, protocol: str = "https",
                 credentials: Callable[[], Credentials | None] = credentials_from_env) -> None:
        self.function_name, self.namespace, self.region = function_name, namespace, region
        self.qualifier, self.endpoint, self.protocol = qualifier, endpoint, protocol
        self._credentials = credentials

    def start(self) -> None:
        creds = self._credentials()
        if creds is None:
            raise ContinuationError("no credentials to invoke the function again")
        # Imported here: only a burst's drainer needs it.
        from tencentcloud.common.common_client import CommonClient
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        http = HttpProfile(endpoint=self.endpoint or "scf.tencentcloudapi.com",
                           protocol=self.protocol, reqTimeout=5)
        client = CommonClient("scf", "2018-04-16",
                              Credential(creds.secret_id, creds.secret_key, creds.token),
                              self.region, ClientProfile(httpProfile=http))
        params = {"FunctionName": self.function_name, "Namespace": self.namespace,
                  "InvocationType": "Event", "ClientContext": json.dumps(CONTINUE_EVENT)}
        if self.qualifier:
            params["Qualifier"] = self.qualifier
        try:
            client.call_json("Invoke", params)
        except TencentCloudSDKException as e:
            raise ContinuationError(f"SCF Invoke refused: {e.code}") from None


class LambdaContinuation:
    """Lambda's asynchronous invoke of this function (boto3 is in Lambda's runtime)."""

    def __init__(self, function_name: str, client: Any = None) -> None:
        self.function_name, self._client = function_name, client

    def start(self) -> None:
        import boto3  # imported here: only a burst's drainer needs it
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client or boto3.client("lambda")
        try:
            client.invoke(FunctionName=self.function_name, InvocationType="Event",
                          Payload=json.dumps(CONTINUE_EVENT).encode())
        except (BotoCoreError, ClientError) as e:
            raise ContinuationError(f"Lambda invoke refused: {type(e).__name__}") from None


class ThreadContinuation:
    """For `serve`, the benches and the tests: the same function, run on a thread of this process.

    In the cloud a continuation is an invocation of its own and runs to its end whatever becomes of
    the invocation that asked for it. A thread ends with its process, so the process keeps track of
    these threads: whoever ends a local instance (a test reporting what its instance retried)
    calls `settle` first, instead of cutting a drain short with the drainer lease held."""

    def __init__(self, run: Callable[[dict[str, Any]], object]) -> None:
        self.run = run

    def start(self) -> None:
        started = _Started()
        started.thread = threading.Thread(target=started.keep, args=(self.run,), daemon=True,
                                          name="autoretry-continuation")
        with _lock:
            _started.append(started)
        started.thread.start()


class _Started:
    """One local continuation: its thread, and its answer once it has one."""

    thread: threading.Thread
    answer: object = None

    def keep(self, run: Callable[[dict[str, Any]], object]) -> None:
        self.answer = run(dict(CONTINUE_EVENT))


_lock = threading.Lock()
_started: list[_Started] = []  # this process's local continuations whose answers nobody took yet


def settle(timeout_s: float) -> tuple[list[object], int]:
    """Wait up to `timeout_s` for this process's local continuations to end, those they start
    included. Returns the answers of those that ended (each is given once) and how many still run
    (they stay tracked)."""
    deadline = time.monotonic() + timeout_s
    answers: list[object] = []
    while True:
        with _lock:
            ended = [s for s in _started if not s.thread.is_alive()]
            running = [s for s in _started if s.thread.is_alive()]
            _started[:] = running
        answers += [s.answer for s in ended]
        if not running or time.monotonic() >= deadline:
            return answers, len(running)
        running[0].thread.join(max(0.0, min(0.5, deadline - time.monotonic())))


def for_invocation(platform: str, context: Any, env: Mapping[str, str] | None = None
                   ) -> Continuation | None:
    """The continuation this invocation's platform offers, if it says who the function is. SCF's
    API is Tencent's unless `AUTORETRY_SCF_ENDPOINT` (`host[:port]`) and `AUTORETRY_SCF_PROTOCOL`
    name another, as the emulator's SCF does for the functions it runs."""
    env = os.environ if env is None else env
    scf_endpoint = env.get("AUTORETRY_SCF_ENDPOINT", "").strip() or None
    scf_protocol = env.get("AUTORETRY_SCF_PROTOCOL", "").strip() or "https"
    if platform == "aws":
        name = getattr(context, "invoked_function_arn", None) or \
            getattr(context, "function_name", None)
        return LambdaContinuation(str(name)) if name else None
    if isinstance(context, dict) and context.get("function_name"):
        return ScfContinuation(str(context["function_name"]),
                               str(context.get("namespace") or "default"),
                               str(context.get("tencentcloud_region") or "ap-guangzhou"),
                               str(context.get("function_version") or "") or None,
                               endpoint=scf_endpoint, protocol=scf_protocol)
    return None
