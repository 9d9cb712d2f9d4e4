"""Tencent's APIs as the deploy command calls them: SCF and CAM through the SDK's product clients,
each request built from its SDK model (a field the model does not have fails in the SDK, before any
call), TDMQ through `wire`'s caller. With `dry_run` every call is printed: reads are made (they show
what exists), changes are not.

A secret never reaches the output: the function's environment is printed with every value but the
plain settings masked (the store's password, the auth token, anything set in the console), and the
zip as its size.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from typing import Any

from handler.commands import Refused

READS = ("Get", "List", "Describe")
# Environment values that are settings, not secrets: printed as they are. AUTORETRY_STORE is printed
# without its credentials; every other value is masked.
PLAIN_VARIABLES = frozenset({"AUTORETRY_REGION", "AUTORETRY_QUEUE", "AUTORETRY_LEDGER_ID",
                             "AUTORETRY_QUEUE_NETWORK", "AUTORETRY_CODE_SHA256",
                             "AUTORETRY_ACCOUNT_UIN", "AUTORETRY_POLICY"})
MASK = "***"
_AUTH_CODES = ("AuthFailure", "InvalidCredential")
Say = Callable[[str], None]


class CallFailed(Exception):
    """An API answered an error (or could not be reached)."""

    def __init__(self, service: str, action: str, code: str, message: str) -> None:
        super().__init__(f"{service} {action}: {code}: {message}")
        self.service, self.action, self.code, self.message = service, action, code, message

    def line(self) -> str:
        if self.code.startswith("UnauthorizedOperation"):
            return (f"the {self.service.upper()} API refused {self.action} ({self.code}: "
                    f"{self.message}): the deployer's key (TENCENTCLOUD_SECRET_ID) needs "
                    f"{self.service}:{self.action} (docs/deploy.md lists every action it needs)")
        if self.code.startswith(_AUTH_CODES):
            return (f"the {self.service.upper()} API refused {self.action} ({self.code}: "
                    f"{self.message}): check TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY")
        return (f"the {self.service.upper()} API call {self.action} failed ({self.code}: "
                f"{self.message}); nothing after it was done, and deploying again goes on from there")


def absent(code: str, action: str) -> bool:
    """An error code that means 'no such thing': wire's rule (ResourceNotFound.*, and FailedOperation
    for a queue's details, which TDMQ's SDKs list too), and CAM's InvalidParameter.RoleNotExist."""
    from handler.commands.wire import not_found

    return not_found(code, action) or "NotExist" in code


def shown(params: dict[str, Any]) -> str:
    """`params` as JSON for the output, with secrets masked."""
    from handler.ledger import describe_store

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        for key, v in value.items():
            if key == "ZipFile" and isinstance(v, str):
                v = f"<zip, {len(v) * 3 // 4} bytes>"
            elif key == "Variables" and isinstance(v, list):
                v = [_masked(item, describe_store) for item in v]
            out[key] = walk(v)
        return out

    return json.dumps(walk(copy.deepcopy(params)), ensure_ascii=False, sort_keys=True)


def _masked(item: Any, describe_store: Callable[[str], str]) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("Value"), str):
        return item
    key = str(item.get("Key"))
    if key == "AUTORETRY_STORE":
        return {**item, "Value": describe_store(item["Value"])}
    return item if key in PLAIN_VARIABLES else {**item, "Value": MASK}


class Cloud:
    """The SCF, CAM and TDMQ APIs in `region`, at `endpoint` (host[:port]; None: Tencent's)."""

    def __init__(self, region: str, endpoint: str | None, protocol: str, dry_run: bool,
                 say: Say) -> None:
        from tencentcloud.common.credential import Credential

        from handler.gateway import credentials_from_env

        try:
            import tencentcloud.cam.v20190116.cam_client
            import tencentcloud.scf.v20180416.scf_client  # noqa: F401
        except ImportError:
            raise Refused("the deploy extra is not installed: pip install -r requirements-deploy.txt "
                          "(Tencent's SCF, CAM and TDMQ SDK packages, pinned)") from None
        creds = credentials_from_env()
        if creds is None:
            raise Refused("no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and "
                          "TENCENTCLOUD_SECRET_KEY (a key that may manage SCF functions, CAM roles "
                          "and policies, and TDMQ-CMQ topics and queues)")
        self.region, self.endpoint, self.protocol = region, endpoint, protocol
        self.dry_run, self.say = dry_run, say
        self._credential = Credential(creds.secret_id, creds.secret_key, creds.token)
        self._clients: dict[str, Any] = {}
        self._tdmq: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    # --- the three APIs --------------------------------------------------------------------------
    def scf(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("scf", action, params)

    def cam(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("cam", action, params)

    def tdmq(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("tdmq", action, params)

    def find(self, service: str, action: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """A read whose 'no such thing' answer is None."""
        try:
            return self._call(service, action, params)
        except CallFailed as e:
            if absent(e.code, action):
                return None
            raise

    def changes(self, action: str) -> bool:
        return not action.startswith(READS)

    # --- one call --------------------------------------------------------------------------------
    def _call(self, service: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        request = None if service == "tdmq" else self._request(service, action, params)
        if self.dry_run:
            verb = "would call" if self.changes(action) else "called"
            self.say(f"  {verb} {action} {shown(params)}")
            if self.changes(action):
                return {}
        try:
            if request is None:
                return self._tdmq_caller()(action, params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an answer's field newer than the pinned SDK
                answer = getattr(self._client(service), action)(request)
        except TencentCloudSDKException as e:
            raise CallFailed(service, action, str(e.get_code() or "Error"),
                             str(e.get_message() or "")) from None
        result: dict[str, Any] = json.loads(answer.to_json_string())
        return result

    @staticmethod
    def _request(service: str, action: str, params: dict[str, Any]) -> Any:
        """The SDK's request model for `action`, filled from `params`: a field it does not have is
        a bug here, raised before anything is sent (even under --dry-run)."""
        request = getattr(_models(service), f"{action}Request")()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the SDK warns of a field its model does not have
            try:
                request._deserialize(params)
            except UserWarning as w:
                raise TypeError(f"{service} {action}: {w} (not in the SDK's model)") from None
        return request

    def _profile(self) -> Any:
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        # An SCF CreateFunction carries the zip: a minute for it to arrive.
        http = HttpProfile(endpoint=self.endpoint or None, protocol=self.protocol, reqTimeout=60)
        return ClientProfile(httpProfile=http, language="en-US")

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            if service == "scf":
                from tencentcloud.scf.v20180416.scf_client import ScfClient

                self._clients[service] = ScfClient(self._credential, self.region, self._profile())
            else:
                from tencentcloud.cam.v20190116.cam_client import CamClient

                # CAM is global: its actions take no region.
                self._clients[service] = CamClient(self._credential, "", self._profile())
        return self._clients[service]

    def _tdmq_caller(self) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
        if self._tdmq is None:
            from handler.commands.wire import tdmq_caller

            self._tdmq = tdmq_caller(self.region, self.endpoint, self.protocol)
        return self._tdmq


def _models(service: str) -> Any:
    if service == "scf":
        from tencentcloud.scf.v20180416 import models as scf_models

        return scf_models
    if service == "cam":
        from tencentcloud.cam.v20190116 import models as cam_models

        return cam_models
    raise ValueError(f"no SDK models for {service!r}")
