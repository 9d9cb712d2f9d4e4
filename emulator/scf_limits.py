"""What Tencent SCF refuses, as it documents it: the checks the emulator's SCF makes on a request's
values before it changes anything.

Sources: the SDK's models (`tencentcloud/scf/v20180416/models.py`: CreateFunctionRequest,
UpdateFunctionCodeRequest, InvokeRequest docstrings) and `errorcodes.py` (the codes and what each
means), docs 583/9708 (timers), 583/32748 (environment variables), 583/100227 (function URLs).
- function names: 2-60, a letter first, letters, digits, - and _, not ending in - or _;
- handlers: "file.function", each 2-60, starting and ending with a letter;
- MemorySize 64, or 128-3072 in steps of 128; Timeout 1-900;
- the zip: Code.ZipFile at most 50 MB, UpdateFunctionCode's ZipFile 20 MB, 500 MB unzipped;
- environment keys: a letter, then letters, digits and _ (2-64); 4 KB of keys and values in all
  (InvalidParameterValue.EnvironmentExceededLimit); none of the names SCF sets itself;
- descriptions: at most 1000 letters, digits, spaces, commas, periods, newlines or Chinese;
- trigger names: a letter, then letters, digits, - and _, at most 100.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from emulator.api import ApiError

NAMESPACE = "default"
MAX_ZIP, MAX_UPDATE_ZIP, MAX_UNZIPPED = 50 << 20, 20 << 20, 500 << 20
MAX_ENVIRONMENT = 4096  # bytes of keys and values together (EnvironmentExceededLimit)
MAX_ASYNC_EVENT, MAX_SYNC_EVENT = 128 << 10, 6 << 20  # Invoke's ClientContext
RUNTIMES = ("Python2.7", "Python3.6", "Python3.7", "Python3.9", "Python3.10", "Nodejs6.10",
            "Nodejs8.9", "Nodejs10.15", "Nodejs12.16", "Nodejs14.18", "Nodejs16.13", "Nodejs18.15",
            "Php5.6", "Php7", "Php7.4", "Php8.0", "Go1", "Java8", "CustomRuntime")
QUALIFIERS = ("$LATEST", "$DEFAULT")  # the version every function has, and its default alias
# What SCF itself sets in a function's environment (doc 583/32748): a function may not set them.
SYSTEM_VARIABLES = ("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN",
                    "TENCENTCLOUD_RUNENV", "TENCENTCLOUD_REGION", "TENCENTCLOUD_APPID",
                    "TENCENTCLOUD_UIN", "USER_CODE_ROOT", "TRIGGER_SRC")

FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,58}[A-Za-z0-9]$")
HANDLER_PART = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,58}[A-Za-z]$")
TRIGGER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
ENV_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
DESCRIPTION = re.compile(r"^[A-Za-z0-9 ,.\n\u4e00-\u9fff]{0,1000}$")
VPC, SUBNET = re.compile(r"^vpc-[a-z0-9]{8}$"), re.compile(r"^subnet-[a-z0-9]{8}$")


def namespace(p: dict[str, Any]) -> str:
    namespace = p.get("Namespace") or NAMESPACE
    if namespace != NAMESPACE:
        raise ApiError("ResourceNotFound.Namespace", f"namespace {namespace} does not exist "
                                                     "(the emulator has only 'default')")
    return str(namespace)


def function_name(p: dict[str, Any]) -> str:
    name = p.get("FunctionName")
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise ApiError("InvalidParameterValue.FunctionName",
                       "FunctionName: 2-60 letters, digits, - and _, a letter first, not ending in - or _")
    return name


def handler(value: Any) -> str:
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) != 2 or not all(HANDLER_PART.match(part) for part in parts):
        raise ApiError("InvalidParameterValue.Handler",
                       "Handler is file.function, each 2-60 letters, digits, - and _, starting and "
                       "ending with a letter")
    return str(value)


def memory(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError("InvalidParameterValue.MemorySize", "MemorySize is a number of MB")
    if value > 3072:
        raise ApiError("LimitExceeded.Memory", "MemorySize is at most 3072 MB")
    if value != 64 and not (value >= 128 and value % 128 == 0):
        raise ApiError("InvalidParameterValue.MemorySize", "MemorySize is 64, or 128 to 3072 in steps of 128")
    return value


def timeout(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApiError("InvalidParameterValue", "Timeout is 1 to 900 seconds")
    if value > 900:
        raise ApiError("LimitExceeded.Timeout", "Timeout is at most 900 seconds")
    return value


def environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    variables = value.get("Variables") if isinstance(value, dict) else None
    if not isinstance(variables, list):
        raise ApiError("InvalidParameterValue.Environment", "Environment is {Variables: [{Key, Value}]}")
    env: dict[str, str] = {}
    for v in variables:
        key, val = (v.get("Key"), v.get("Value")) if isinstance(v, dict) else (None, None)
        if not isinstance(key, str) or not ENV_KEY.match(key) or not isinstance(val, str):
            raise ApiError("InvalidParameterValue.Environment",
                           f"variable {key!r}: a key of 2-64 letters, digits and _ (a letter first) "
                           "and a string value")
        if key in SYSTEM_VARIABLES or key.startswith("SCF_"):
            raise ApiError("InvalidParameterValue.EnvironmentSystemProtect",
                           f"{key} is set by SCF itself")
        if key in env:
            raise ApiError("InvalidParameterValue.Environment", f"variable {key} is given twice")
        env[key] = val
    size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if size > MAX_ENVIRONMENT:
        raise ApiError("InvalidParameterValue.EnvironmentExceededLimit",
                       f"the variables take {size} bytes; keep them within 4 KB")
    return env


def description(value: Any) -> str:
    if not isinstance(value, str) or not DESCRIPTION.match(value):
        raise ApiError("InvalidParameterValue.Description",
                       "Description: at most 1000 letters, digits, spaces, commas, periods, newlines "
                       "or Chinese characters")
    return value


def vpc(value: Any) -> dict[str, str]:
    if value is None:
        return {"VpcId": "", "SubnetId": ""}
    vpc, subnet = (value.get("VpcId") or "", value.get("SubnetId") or "") if isinstance(value, dict) \
        else (None, None)
    if (vpc, subnet) == ("", ""):
        return {"VpcId": "", "SubnetId": ""}
    if not (isinstance(vpc, str) and VPC.match(vpc) and isinstance(subnet, str) and SUBNET.match(subnet)):
        raise ApiError("InvalidParameterValue.Vpc", "VpcConfig is {VpcId: vpc-xxxxxxxx, "
                                                    "SubnetId: subnet-xxxxxxxx}, both or neither")
    return {"VpcId": vpc, "SubnetId": subnet}


def public_net(value: Any) -> dict[str, Any]:
    if value is None:
        value = {"PublicNetStatus": "ENABLE"}
    status = value.get("PublicNetStatus") if isinstance(value, dict) else None
    eip = (value.get("EipConfig") or {}) if isinstance(value, dict) else None
    eip_status = eip.get("EipStatus", "DISABLE") if isinstance(eip, dict) else None
    if status not in ("ENABLE", "DISABLE") or eip_status not in ("ENABLE", "DISABLE"):
        raise ApiError("InvalidParameterValue.PublicNetConfig",
                       "PublicNetConfig is {PublicNetStatus: ENABLE|DISABLE, EipConfig: {EipStatus}}")
    return {"PublicNetStatus": status, "EipConfig": {"EipStatus": eip_status, "EipAddress": []}}


def qualifier(value: Any, refusal: str) -> str:
    qualifier = value or "$LATEST"
    if qualifier not in QUALIFIERS:
        raise ApiError(refusal, f"qualifier {qualifier} does not exist (the emulator has "
                                f"{' and '.join(QUALIFIERS)})")
    return str(qualifier)


def url_desc(value: Any) -> dict[str, Any]:
    """A function URL's TriggerDesc (doc 583/100227): {"AuthType": "NONE"|"CAM",
    "NetConfig": {"EnableIntranet": bool, "EnableExtranet": bool}, ...}."""
    try:
        desc = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        desc = None
    net = desc.get("NetConfig") if isinstance(desc, dict) else None
    if not isinstance(desc, dict) or desc.get("AuthType") not in ("NONE", "CAM") or not (
            isinstance(net, dict) and all(isinstance(net.get(k), bool)
                                          for k in ("EnableIntranet", "EnableExtranet"))):
        raise ApiError("InvalidParameterValue.TriggerDesc",
                       'TriggerDesc is JSON: {"AuthType": "NONE"|"CAM", "NetConfig": '
                       '{"EnableIntranet": bool, "EnableExtranet": bool}}')
    return desc


def zip_file(code: dict[str, Any], where: str) -> bytes:
    if "ZipFile" not in code:
        raise ApiError("InvalidParameterValue.Code", "give Code.ZipFile (the emulator takes no COS, "
                                                     "demo or image code)")
    return zip_text(code["ZipFile"], where)


def zip_text(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ApiError("InvalidParameterValue.ZipFile", f"{where} is the zip, base64-encoded")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("InvalidParameterValue.ZipFileBase64BinasciiError",
                       f"{where} is not valid base64") from None


def whole_number(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(f"InvalidParameterValue.{name}", f"{name} is a whole number")
    return value


def runtime(value: Any) -> str:
    if value not in RUNTIMES:
        raise ApiError("InvalidParameterValue.Runtime", f"Runtime is one of {', '.join(RUNTIMES)}")
    return str(value)


def trigger_name(value: Any) -> str:
    if not isinstance(value, str) or not TRIGGER_NAME.match(value):
        raise ApiError("InvalidParameterValue.TriggerName",
                       "TriggerName: a letter, then letters, digits, - and _, at most 100")
    return value
