"""The real SDK's CommonClient against the emulator: TC3-signed for the named service, as the
function would call Batch or the Tag service when given an endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from emulator import Emulator

SECRET_ID, SECRET_KEY = "AKIDEMUTEST", "emu-test-secret"
REGION = "ap-guangzhou"
VERSIONS = {"batch": "2017-03-12", "tag": "2018-08-13"}


def client(emu: Emulator, service: str = "batch", *, key: str = SECRET_KEY,
           version: str | None = None) -> CommonClient:
    http = HttpProfile(endpoint=emu.endpoint, protocol="http", reqTimeout=5)
    return CommonClient(service, version or VERSIONS[service], credential.Credential(SECRET_ID, key),
                        REGION, profile=ClientProfile(httpProfile=http))


def call(emu: Emulator, action: str, params: dict[str, Any], service: str = "batch") -> dict[str, Any]:
    """The answer's `Response`; an error answer raises TencentCloudSDKException."""
    answer: dict[str, Any] = client(emu, service).call_json(action, params)["Response"]
    return answer


def error_code(emu: Emulator, action: str, params: dict[str, Any], service: str = "batch") -> str:
    try:
        call(emu, action, params, service)
    except TencentCloudSDKException as e:
        return str(e.code)
    raise AssertionError(f"{action} succeeded; an error was expected")


def typed(emu: Emulator, client_class: Any, models: Any, action: str, params: dict[str, Any],
          secret: tuple[str, str], *, timeout_s: float = 30.0) -> Any:
    """The SDK's typed answer (`<Action>Response`) to `action`, sent by the product's own client
    (`client_class`, e.g. ScfClient, with its `models` module)."""
    http = HttpProfile(endpoint=emu.endpoint, protocol="http", reqTimeout=timeout_s)
    sdk = client_class(credential.Credential(*secret), REGION, ClientProfile(httpProfile=http))
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    return getattr(sdk, action)(request)


def refusal(send: Callable[[], object], what: str) -> str:
    """The error code `send` is answered with; AssertionError if it succeeds."""
    try:
        send()
    except TencentCloudSDKException as e:
        return str(e.code)
    raise AssertionError(f"{what} succeeded; an error was expected")
