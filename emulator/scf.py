"""Tencent SCF (API 3.0 `scf` 2018-04-16), as `python -m handler deploy scf` uses it: functions and
their timer and function URL triggers, with the service's error codes and documented limits
(emulator.scf_limits), and the deployed code really run (emulator.scf_runtime) when a timer fires
(emulator.scf_cron), the function URL is called (emulator.scf_url) or `Invoke` is asked.

Answers carry the field names of the SDK's response models (`tencentcloud/scf/v20180416/models.py`);
error codes are the ones Tencent's SDKs list for each action ("possible error codes"). A function is
`Creating` (or `Updating`) for DEPLOY_S / speedup seconds after a change, then `Active`; changes and
Invoke are refused until it is Active, as the real service refuses them while it deploys. A function
with a Role gets temporary credentials for it, which the emulator's signature check accepts until
the role changes or the function is deleted.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import string
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator import scf_limits as limits
from emulator.api import ApiError, answer_by_method
from emulator.scf_cron import Cron, CronError, EmulatorClock, Ticker
from emulator.scf_runtime import RunSpec, Runtime

VERSION = "2018-04-16"
SERVICE = "scf"
URL_PATH = "/scf-url/"  # the emulator serves every function URL under this path
DEPLOY_S = 2.0  # real seconds (at speedup 1) a function stays Creating / Updating
# A run's limit is the function's Timeout / speedup, but never under this many real seconds (nor over
# the Timeout itself): the function's own work — its start, its calls over the network — takes real
# time no speedup shortens, and it plans that work by the limit it is given (time_limit_in_ms).
MIN_RUN_S = 10.0
TRIGGER_TYPES = ("timer", "http")
UNEMULATED_TRIGGER_TYPES = ("cos", "cls", "ckafka", "apigw", "cmq", "mps", "clb")
_ID = string.ascii_lowercase + string.digits


@dataclass
class Trigger:
    name: str
    type: str  # "timer" | "http"
    qualifier: str
    enabled: bool
    custom_argument: str
    description: str
    cron: Cron | None = None  # timers
    url_id: str | None = None  # function URLs
    http_desc: dict[str, Any] = field(default_factory=dict)  # function URLs: the TriggerDesc given
    added: float = field(default_factory=time.time)


@dataclass
class Function:
    name: str
    namespace: str
    function_id: str
    handler: str
    runtime: str
    role: str
    description: str
    memory: int
    timeout: int
    env: dict[str, str]
    vpc: dict[str, str]
    public_net: dict[str, Any]
    code_dir: Path
    code_size: int
    status: str = "Creating"
    ready_at: float = 0.0
    added: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    credentials: tuple[str, str, str] | None = None  # the role's temporary SecretId, key, token


# What UpdateFunctionConfiguration may change: the parameter, the function's field, its check.
SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "MemorySize": ("memory", limits.memory), "Timeout": ("timeout", limits.timeout),
    "Environment": ("env", limits.environment), "Runtime": ("runtime", limits.runtime),
    "Description": ("description", limits.description), "VpcConfig": ("vpc", limits.vpc),
    "PublicNetConfig": ("public_net", limits.public_net)}


class Scf:
    def __init__(self, secrets_: MutableMapping[str, str], region: str, *, uin: str,
                 speedup: float = 1.0, base_url: Callable[[], str],
                 role_exists: Callable[[str], bool] | None = None,
                 app_id: Callable[[], str] = lambda: "1250000000",
                 python: str | None = None, url_in_answer: bool = False) -> None:
        self.secrets, self.region, self.uin, self.speedup = secrets_, region, uin, speedup
        self.base_url, self._role_exists, self._app_id = base_url, role_exists, app_id
        self.url_in_answer = url_in_answer
        self.min_run_s = MIN_RUN_S
        self.runtime = Runtime(python, speedup=speedup)
        self.clock = EmulatorClock(speedup)
        self.ticker = Ticker(self.clock, self._tick)
        self.functions: dict[tuple[str, str], Function] = {}
        self._lock = threading.RLock()

    # --- what tests look at ------------------------------------------------------------------
    def invocations(self, name: str) -> list[dict[str, Any]]:
        """Every invocation of function `name` so far, oldest first: trigger ("timer:<name>",
        "url:<id>", "invoke:Event", "invoke:RequestResponse"), request_id, attempt, started,
        duration_s, ended, exit, timed_out, ok, answer, error, stderr (the log's tail)."""
        return self.runtime.invocations(name)

    def wait_invocations(self, name: str, count: int, timeout: float = 10.0, *,
                         trigger: str | None = None) -> list[dict[str, Any]]:
        """The invocations (of `trigger` only, if given) once `count` have ended; AssertionError
        with what there is if that takes longer than `timeout` seconds."""
        end = time.time() + timeout
        while True:
            seen = [i for i in self.invocations(name)
                    if (trigger is None or i["trigger"] == trigger) and i["ended"]]
            if len(seen) >= count:
                return seen
            if time.time() >= end:
                raise AssertionError(f"{name}: {len(seen)} of {count} invocations within "
                                     f"{timeout:g} s: {seen}")
            time.sleep(0.02)

    def function_urls(self) -> list[str]:
        with self._lock:
            return [self.url(t) for fn in self.functions.values() for t in fn.triggers.values()
                    if t.url_id]

    def url(self, trigger: Trigger) -> str:
        return f"{self.base_url()}{URL_PATH}{trigger.url_id}/"

    def stop(self) -> None:
        self.ticker.stop()
        self.runtime.stop()

    # --- the API -----------------------------------------------------------------------------
    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "Invoke":  # may run the function to its end: never under the lock
            return self._invoke(params)
        return answer_by_method(self, "scf", action, params, self._lock)

    def _api_CreateFunction(self, p: dict[str, Any]) -> dict[str, Any]:
        namespace, name = limits.namespace(p), limits.function_name(p)
        if (namespace, name) in self.functions:
            raise ApiError("ResourceInUse.Function", f"function {name} already exists")
        if p.get("Type", "Event") != "Event":
            raise ApiError("InvalidParameterValue.FunctionType",
                           "the emulator plays event functions only (Type Event)")
        code = p.get("Code")
        if not isinstance(code, dict) or not code:
            raise ApiError("MissingParameter.Code", "Code is required")
        runtime = limits.runtime(p.get("Runtime") or "Python2.7")  # the documented default
        handler = limits.handler(p.get("Handler") or "index.main_handler")
        memory, timeout = limits.memory(p.get("MemorySize", 128)), limits.timeout(p.get("Timeout", 3))
        env = limits.environment(p.get("Environment"))
        role = self._role(p.get("Role"))
        vpc, public_net = limits.vpc(p.get("VpcConfig")), limits.public_net(p.get("PublicNetConfig"))
        description = limits.description(p.get("Description", ""))
        code_dir, size = self._unpack(limits.zip_file(code, "Code.ZipFile"), name, limits.MAX_ZIP)
        fn = Function(name, namespace, f"lam-{_random_id(8)}", handler, runtime, role, description,
                      memory, timeout, env, vpc, public_net, code_dir, size)
        self._deploying(fn, "Creating")
        self._grant(fn)
        self.functions[(namespace, name)] = fn
        return {}

    def _api_GetFunction(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(p)
        limits.qualifier(p.get("Qualifier"), "ResourceNotFound.Version")
        return self._describe(fn)

    def _api_UpdateFunctionCode(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._active(p, "FailedOperation.UpdateFunctionCode")
        if "ZipFile" in p:
            zipped = limits.zip_text(p["ZipFile"], "ZipFile")
        elif isinstance(p.get("Code"), dict):
            zipped = limits.zip_file(p["Code"], "Code.ZipFile")
        else:
            raise ApiError("InvalidParameterValue.Code", "give ZipFile (the emulator takes no COS code)")
        handler = limits.handler(p["Handler"]) if p.get("Handler") else fn.handler
        fn.code_dir, fn.code_size = self._unpack(zipped, fn.name, limits.MAX_UPDATE_ZIP)
        fn.handler = handler
        self._deploying(fn, "Updating")
        return {}

    def _api_UpdateFunctionConfiguration(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._active(p, "FailedOperation.UpdateFunctionConfiguration")
        changes: dict[str, Any] = {attr: check(p[key]) for key, (attr, check) in SETTINGS.items() if key in p}
        if "Role" in p:
            changes["role"] = self._role(p["Role"])
        for name, value in changes.items():
            setattr(fn, name, value)
        if "role" in changes:
            self._grant(fn)
        self._deploying(fn, "Updating")
        return {}

    def _api_DeleteFunction(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._active(p, "FailedOperation.DeleteFunction")
        del self.functions[(fn.namespace, fn.name)]
        fn.triggers.clear()  # its timers stop with it, and its URL answers 404
        self._revoke(fn)
        self.runtime.retire(fn.function_id)
        return {}

    def _api_ListTriggers(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(p)
        offset = limits.whole_number(p.get("Offset", 0), "Offset")
        limit = limits.whole_number(p.get("Limit", 20), "Limit")
        if offset < 0:
            raise ApiError("InvalidParameterValue.Offset", "Offset cannot be negative")
        if not 1 <= limit <= 100:
            raise ApiError("InvalidParameterValue.Limit", "Limit is 1 to 100")
        order_by = p.get("OrderBy") or "mod_time"
        if order_by not in ("add_time", "mod_time"):
            raise ApiError("InvalidParameterValue.OrderBy", "OrderBy is add_time or mod_time")
        order = str(p.get("Order") or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise ApiError("InvalidParameterValue.Order", "Order is ASC or DESC")
        triggers = sorted(fn.triggers.values(), key=lambda t: t.added, reverse=order == "DESC")
        for f in p.get("Filters") or []:
            wanted, key = set(f.get("Values") or []), f.get("Name")
            attr = {"Qualifier": "qualifier", "TriggerName": "name", "Description": "description"}.get(key)
            if attr is None:
                raise ApiError("InvalidParameterValue.Filters",
                               "Filters name Qualifier, TriggerName or Description")
            triggers = [t for t in triggers if getattr(t, attr) in wanted]
        page = triggers[offset:offset + limit]
        return {"TotalCount": len(triggers), "Triggers": [self._trigger(t, info=True) for t in page]}

    def _api_CreateTrigger(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._active(p, "FailedOperation.CreateTrigger")
        name, kind = p.get("TriggerName"), p.get("Type")
        name = limits.trigger_name(name)
        if kind in UNEMULATED_TRIGGER_TYPES:
            raise ApiError("UnsupportedOperation.Trigger", f"the emulator plays timer and http "
                                                           f"triggers only, not {kind}")
        if kind not in TRIGGER_TYPES:
            raise ApiError("InvalidParameterValue.Type", "Type is one of cos, cls, timer, ckafka, http")
        qualifier = limits.qualifier(p.get("Qualifier"), "InvalidParameterValue.Qualifier")
        enable = p.get("Enable", "OPEN")
        if enable not in ("OPEN", "CLOSE"):
            raise ApiError("InvalidParameterValue.Enable", "Enable is OPEN or CLOSE")
        if name in fn.triggers:
            raise ApiError("ResourceInUse.Trigger", f"trigger {name} already exists")
        argument = p.get("CustomArgument") or ""
        trigger = Trigger(name, kind, qualifier, enable == "OPEN", argument, str(p.get("Description") or ""))
        desc = p.get("TriggerDesc")
        if kind == "timer":
            try:
                trigger.cron = Cron.parse(desc if isinstance(desc, str) else "")
            except CronError as e:
                raise ApiError("InvalidParameterValue.TriggerDesc", str(e)) from None
        else:
            if argument:
                raise ApiError("InvalidParameterValue.CustomArgument", "CustomArgument is for timers only")
            trigger.http_desc = limits.url_desc(desc)
            if any(t.url_id and t.qualifier == qualifier for t in fn.triggers.values()):
                raise ApiError("ResourceInUse.Trigger", f"the function has a URL for {qualifier} already")
            trigger.url_id = _random_id(10)
        fn.triggers[name] = trigger
        fn.modified = time.time()
        if trigger.cron is not None:
            self.ticker.start()
        return {"TriggerInfo": self._trigger(trigger, info=False)}

    def _api_DeleteTrigger(self, p: dict[str, Any]) -> dict[str, Any]:
        fn = self._function(p)
        name, kind = p.get("TriggerName"), p.get("Type")
        trigger = fn.triggers.get(name) if isinstance(name, str) else None
        if trigger is None or trigger.type != kind:
            raise ApiError("ResourceNotFound.Trigger", f"function {fn.name} has no {kind} trigger {name}")
        del fn.triggers[trigger.name]
        return {}

    def _invoke(self, p: dict[str, Any]) -> dict[str, Any]:
        kind = p.get("InvocationType") or "RequestResponse"
        if kind not in ("RequestResponse", "Event"):
            raise ApiError("InvalidParameterValue.InvokeType", "InvocationType is RequestResponse or Event")
        context = p.get("ClientContext") or "{}"
        if not isinstance(context, str):
            raise ApiError("InvalidParameterValue.ClientContext", "ClientContext is a JSON string")
        if len(context.encode()) > (limits.MAX_ASYNC_EVENT if kind == "Event" else limits.MAX_SYNC_EVENT):
            raise ApiError("InvalidParameter.RequestTooLarge", "ClientContext is over 128 KB (Event) "
                                                               "or 6 MB (RequestResponse)")
        try:
            event = json.loads(context)
        except ValueError:
            raise ApiError("InvalidParameterValue.ClientContext", "ClientContext is not JSON") from None
        with self._lock:
            fn = self._active(p, "FailedOperation.FunctionStatusError")
            limits.qualifier(p.get("Qualifier"), "InvalidParameterValue.Qualifier")
            spec = self._spec(fn)
        if kind == "Event":
            return {"Result": {"FunctionRequestId": self.runtime.start(spec, event, "invoke:Event")}}
        inv = self.runtime.run(spec, event, "invoke:RequestResponse")
        return {"Result": {"FunctionRequestId": inv.request_id, "InvokeResult": 0 if inv.ok else -1,
                           "RetMsg": json.dumps(inv.answer) if inv.ok else "",
                           "ErrMsg": inv.error or "", "Log": inv.stderr, "MemUsage": 0,
                           "Duration": round(inv.duration_s * 1000, 3),
                           "BillDuration": int(inv.duration_s * 1000) + 1}}

    # --- timers and function URLs ------------------------------------------------------------
    def _tick(self, second: int) -> None:
        due: list[tuple[RunSpec, dict[str, Any], str]] = []
        with self._lock:
            for fn in self.functions.values():
                self._settle(fn)
                for t in fn.triggers.values():
                    if t.cron is not None and t.enabled and fn.status == "Active" and t.cron.matches(second):
                        event = {"Type": "Timer", "TriggerName": t.name,
                                 "Time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)),
                                 "Message": t.custom_argument}
                        due.append((self._spec(fn, timer=True), event, f"timer:{t.name}"))
        for spec, event, trigger in due:
            self.runtime.start(spec, event, trigger)

    def url_target(self, url_id: str) -> tuple[RunSpec, Trigger] | None:
        """The function a function URL reaches, ready to run; None if no URL has that id."""
        with self._lock:
            for fn in self.functions.values():
                for t in fn.triggers.values():
                    if t.url_id == url_id:
                        self._settle(fn)
                        return self._spec(fn), t
        return None

    # --- parts -------------------------------------------------------------------------------
    def _function(self, p: dict[str, Any]) -> Function:
        namespace, name = limits.namespace(p), limits.function_name(p)
        fn = self.functions.get((namespace, name))
        if fn is None:
            raise ApiError("ResourceNotFound.Function", f"function {name} does not exist in {namespace}")
        self._settle(fn)
        return fn

    def _active(self, p: dict[str, Any], refusal: str) -> Function:
        fn = self._function(p)
        if fn.status != "Active":
            raise ApiError(refusal, f"function {fn.name} is {fn.status}; try again once it is Active")
        return fn

    def _deploying(self, fn: Function, status: str) -> None:
        fn.status, fn.modified = status, time.time()
        fn.ready_at = time.monotonic() + DEPLOY_S / self.speedup

    def _settle(self, fn: Function) -> None:
        if fn.status in ("Creating", "Updating") and time.monotonic() >= fn.ready_at:
            fn.status = "Active"

    def _unpack(self, raw: bytes, name: str, limit: int) -> tuple[Path, int]:
        if len(raw) > limit:
            raise ApiError("InvalidParameter.RequestTooLarge", f"the zip is over {limit >> 20} MB")
        try:
            archive = zipfile.ZipFile(io.BytesIO(raw))
            if sum(i.file_size for i in archive.infolist()) > limits.MAX_UNZIPPED:
                raise ApiError("InvalidParameter.RequestTooLarge",
                               f"the code is over {limits.MAX_UNZIPPED >> 20} MB unzipped")
            return self.runtime.unpack(archive, name), len(raw)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
            raise ApiError("InvalidParameterValue.ZipFile", "the code is not a standard zip file") from None

    def _role(self, role: Any) -> str:
        if role is None or role == "":
            return ""
        if not isinstance(role, str):
            raise ApiError("InvalidParameter", "Role is a role name")
        if self._role_exists is not None and not self._role_exists(role):
            raise ApiError("ResourceNotFound.Role", f"role {role} does not exist")
        return role

    def _grant(self, fn: Function) -> None:
        """Temporary credentials for the function's role, valid with the emulator's signature
        check until the role changes or the function is deleted."""
        self._revoke(fn)
        if fn.role:
            fn.credentials = (f"AKIDSCF{secrets.token_hex(12).upper()}", secrets.token_urlsafe(24),
                              secrets.token_urlsafe(48))
            self.secrets[fn.credentials[0]] = fn.credentials[1]

    def _revoke(self, fn: Function) -> None:
        if fn.credentials is not None:
            self.secrets.pop(fn.credentials[0], None)
            fn.credentials = None

    def _spec(self, fn: Function, *, timer: bool = False) -> RunSpec:
        timeout_s = max(fn.timeout / self.speedup, min(float(fn.timeout), self.min_run_s))
        return RunSpec(fn.name, fn.function_id, fn.handler, fn.runtime, fn.code_dir,
                       self._environment(fn, timer), timeout_s, self._context(fn, timeout_s))

    def _environment(self, fn: Function, timer: bool) -> dict[str, str]:
        """What the process gets: a plain base, the emulator's endpoints (the function's own
        variables win), the function's variables, and what SCF injects."""
        endpoint = self.base_url().removeprefix("http://")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": tempfile.gettempdir(),
               "AUTORETRY_BATCH_ENDPOINT": endpoint, "AUTORETRY_BATCH_PROTOCOL": "http",
               "AUTORETRY_TAG_ENDPOINT": endpoint, "AUTORETRY_QUEUE_ENDPOINT": self.base_url(),
               "AUTORETRY_TDMQ_ENDPOINT": endpoint, "AUTORETRY_TDMQ_PROTOCOL": "http",
               "AUTORETRY_SCF_ENDPOINT": endpoint, "AUTORETRY_SCF_PROTOCOL": "http"}
        if self.speedup != 1:
            env["AUTORETRY_API_SPEEDUP"] = f"{self.speedup:g}"
        env.update(fn.env)
        env.update({"TENCENTCLOUD_RUNENV": "SCF", "USER_CODE_ROOT": str(fn.code_dir),
                    "PYTHONPATH": str(fn.code_dir), "SCF_RUNTIME": fn.runtime,
                    "SCF_FUNCTIONNAME": fn.name, "SCF_FUNCTIONNAMESPACE": fn.namespace,
                    "SCF_FUNCTIONVERSION": "$LATEST", "SCF_MEMORYSIZE": str(fn.memory),
                    "SCF_TIMEOUT": str(fn.timeout), "TENCENTCLOUD_REGION": self.region,
                    "TENCENTCLOUD_APPID": self._app_id(), "TENCENTCLOUD_UIN": self.uin})
        if timer:
            env["TRIGGER_SRC"] = "timer"
        if fn.credentials is not None:
            env.update(zip(("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY",
                            "TENCENTCLOUD_SESSIONTOKEN"), fn.credentials, strict=True))
        return env

    def _context(self, fn: Function, timeout_s: float) -> dict[str, Any]:
        """SCF's context argument (doc 583/9210); `request_id` is added per invocation."""
        return {"memory_limit_in_mb": fn.memory, "time_limit_in_ms": int(timeout_s * 1000),
                "environment": json.dumps({"SCF_NAMESPACE": fn.namespace}),
                "environ": f"SCF_NAMESPACE={fn.namespace};SCF_NAMESPACE={fn.namespace}",
                "function_version": "$LATEST", "function_name": fn.name, "namespace": fn.namespace,
                "tencentcloud_region": self.region, "tencentcloud_appid": self._app_id(),
                "tencentcloud_uin": self.uin}

    # --- answers -----------------------------------------------------------------------------
    def _describe(self, fn: Function) -> dict[str, Any]:
        """GetFunctionResponse's fields."""
        return {
            "FunctionName": fn.name, "Namespace": fn.namespace, "FunctionId": fn.function_id,
            "Status": fn.status, "StatusDesc": "", "StatusReasons": [], "AvailableStatus": "Available",
            "Handler": fn.handler, "Runtime": fn.runtime, "Role": fn.role, "Description": fn.description,
            "MemorySize": fn.memory, "Timeout": fn.timeout, "InitTimeout": 65, "Type": "Event",
            "Environment": {"Variables": [{"Key": k, "Value": v} for k, v in fn.env.items()]},
            "VpcConfig": fn.vpc, "PublicNetConfig": fn.public_net,
            "EipConfig": {"EipFixed": "FALSE", "Eips": []},
            "CodeSize": fn.code_size, "CodeInfo": "", "CodeResult": "success", "CodeError": "",
            "ErrNo": 0, "FunctionVersion": "$LATEST", "Qualifier": "$LATEST",
            "AddTime": _beijing(fn.added), "ModTime": _beijing(fn.modified),
            "Triggers": [self._trigger(t, info=False) for t in fn.triggers.values()],
            "InstallDependency": "FALSE", "UseGpu": "FALSE", "L5Enable": "FALSE", "OnsEnable": "FALSE",
            "AsyncRunEnable": "FALSE", "TraceEnable": "FALSE", "DnsCache": "FALSE",
            "ClsLogsetId": "", "ClsTopicId": "", "Tags": [], "Layers": []}

    def _trigger(self, t: Trigger, *, info: bool) -> dict[str, Any]:
        """A Trigger (GetFunction, CreateTrigger) or, with `info`, a TriggerInfo (ListTriggers).
        A timer's TriggerDesc reads {"cron": ...}, as the service lists existing timers."""
        if t.cron is not None:
            desc = json.dumps({"cron": t.cron.text})
        else:
            shown = dict(t.http_desc)
            if self.url_in_answer:
                shown["Url"] = self.url(t)
            desc = json.dumps(shown)
        answer: dict[str, Any] = {
            "TriggerName": t.name, "Type": t.type, "TriggerDesc": desc, "Enable": int(t.enabled),
            "Qualifier": t.qualifier, "CustomArgument": t.custom_argument,
            "AvailableStatus": "Available", "AddTime": _beijing(t.added), "ModTime": _beijing(t.added),
            "ResourceId": "", "BindStatus": "", "TriggerAttribute": "", "Description": t.description}
        if info:
            answer["BoundResources"] = ""
        return answer


def _random_id(n: int) -> str:
    return "".join(secrets.choice(_ID) for _ in range(n))


def _beijing(t: float) -> str:
    """The service's time stamps: "2018-06-07 09:52:23", Beijing time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + 8 * 3600))
