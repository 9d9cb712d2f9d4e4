"""The SCF function: made as asked, updated in place where it differs, left alone where it
matches, each change waited on until the function is Active again (its triggers:
handler.deploy.triggers).

The code is known to be up to date by AUTORETRY_CODE_SHA256 in the function's environment (SCF
reports no digest of the code it holds): the zip is uploaded when that differs. The environment
variables deploy sets are its own (`OWNED`); any other (AUTORETRY_HMAC_SECRET, AUTORETRY_NOTIFY_*,
set in the console) is kept as it is.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from handler.commands import Refused
from handler.deploy.cloud import Cloud
from handler.deploy.documents import NAMESPACE
from handler.deploy.triggers import OURS, delete_trigger, list_triggers

HANDLER = "index.main_handler"  # deploy/scf/index.py at the zip's root
RUNTIME = "Python3.10"  # SCF's newest Python runtime; deploy/scf/build.py builds for it
DESCRIPTION = "Retries failed Tencent Batch jobs, exactly once per failure"
CODE_SHA256 = "AUTORETRY_CODE_SHA256"
OWNED = frozenset({"AUTORETRY_STORE", "AUTORETRY_REGION", "AUTORETRY_QUEUE", "AUTORETRY_LEDGER_ID",
                   "AUTORETRY_QUEUE_NETWORK", "AUTORETRY_AUTH_TOKEN", "AUTORETRY_POLICY",
                   "AUTORETRY_ACCOUNT_UIN", CODE_SHA256})
ACTIVE_WAIT_S = 300.0
GONE_WAIT_S = 120.0


@dataclass(frozen=True)
class Function:
    name: str
    role: str
    code: bytes
    environment: dict[str, str]  # deploy's own variables (OWNED), AUTORETRY_CODE_SHA256 set here
    memory: int = 256
    timeout: int = 120
    vpc: tuple[str, str] | None = None
    kept: dict[str, str] = field(default_factory=dict)  # the function's other variables

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.code).hexdigest()

    def variables(self) -> dict[str, str]:
        return {**self.kept, **self.environment, CODE_SHA256: self.sha256}

    def configuration(self) -> dict[str, Any]:
        """What CreateFunction and UpdateFunctionConfiguration both take."""
        params: dict[str, Any] = {
            "FunctionName": self.name, "Namespace": NAMESPACE, "Description": DESCRIPTION,
            "MemorySize": self.memory, "Timeout": self.timeout, "Role": self.role,
            "Environment": {"Variables": [{"Key": k, "Value": v}
                                          for k, v in sorted(self.variables().items())]},
            # The Batch API is reached over the internet, from inside a VPC too.
            "PublicNetConfig": {"PublicNetStatus": "ENABLE"}}
        if self.vpc is not None:
            params["VpcConfig"] = {"VpcId": self.vpc[0], "SubnetId": self.vpc[1]}
        return params

    def create_params(self) -> dict[str, Any]:
        return {**self.configuration(), "Handler": HANDLER, "Runtime": RUNTIME,
                "Code": {"ZipFile": base64.b64encode(self.code).decode()}}

    def code_params(self) -> dict[str, Any]:
        return {"FunctionName": self.name, "Namespace": NAMESPACE, "Handler": HANDLER,
                "ZipFile": base64.b64encode(self.code).decode()}


def variables_of(found: dict[str, Any] | None) -> dict[str, str]:
    """A GetFunction answer's environment as a dict."""
    listed = ((found or {}).get("Environment") or {}).get("Variables") or []
    return {str(v.get("Key")): str(v.get("Value") or "") for v in listed if v.get("Key")}


def kept_variables(found: dict[str, Any] | None) -> dict[str, str]:
    return {k: v for k, v in variables_of(found).items() if k not in OWNED}


def code_changed(found: dict[str, Any], fn: Function) -> bool:
    return variables_of(found).get(CODE_SHA256) != fn.sha256 or found.get("Handler") != HANDLER


def configuration_changes(found: dict[str, Any], fn: Function, hide: frozenset[str] = frozenset()
                          ) -> tuple[bool, list[str]]:
    """Whether the function's configuration differs from `fn`, and what differs in words: field
    names and plain values, and for the environment only the names of the variables (their values
    may be secrets). Variables in `hide` count as a change but are not named."""
    said: list[str] = []
    for key, wanted in (("Description", DESCRIPTION), ("MemorySize", fn.memory),
                        ("Timeout", fn.timeout), ("Role", fn.role), ("Runtime", RUNTIME)):
        if found.get(key) != wanted:
            said.append(key if key == "Description" else f"{key}: {found.get(key)} → {wanted}")
    vpc = found.get("VpcConfig") or {}
    had = (vpc.get("VpcId") or "", vpc.get("SubnetId") or "")
    if had != (fn.vpc or ("", "")):
        said.append(f"VpcConfig: {'/'.join(had) if any(had) else 'none'} → "
                    f"{'/'.join(fn.vpc) if fn.vpc else 'none'}")
    public = (found.get("PublicNetConfig") or {}).get("PublicNetStatus")
    if public is not None and public != "ENABLE":
        said.append(f"PublicNetConfig: {public} → ENABLE")
    have, want = variables_of(found), fn.variables()
    differ = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
    named = [k for k in differ if k not in hide]
    if named:
        said.append(f"Environment: {', '.join(named)}")
    return bool(said) or bool(differ), said


def get_function(cloud: Cloud, name: str) -> dict[str, Any] | None:
    return cloud.find("scf", "GetFunction", {"FunctionName": name, "Namespace": NAMESPACE})


def ensure_function(cloud: Cloud, fn: Function, found: dict[str, Any] | None) -> None:
    """Create the function, or bring it to `fn`: code first, then configuration (so a run cut
    between them uploads the code again rather than believing it current)."""
    dry = cloud.dry_run
    if found is None:
        cloud.scf("CreateFunction", fn.create_params())
        wait_active(cloud, fn.name)
        cloud.say(f"function {fn.name}: {'would be created' if dry else 'created'}")
        return
    if found.get("Status") != "Active":
        wait_active(cloud, fn.name)
    done: list[str] = []
    code = code_changed(found, fn)
    if code:
        cloud.scf("UpdateFunctionCode", fn.code_params())
        wait_active(cloud, fn.name)
        done.append("code would be updated" if dry else "code updated")
    # The digest changes with the code: not worth naming beside "code updated".
    needed, said = configuration_changes(found, fn, frozenset({CODE_SHA256}) if code else frozenset())
    if needed:
        params = fn.configuration()
        if found.get("Runtime") != RUNTIME:
            params["Runtime"] = RUNTIME
        if "VpcConfig" not in params and any((found.get("VpcConfig") or {}).values()):
            params["VpcConfig"] = {"VpcId": "", "SubnetId": ""}  # leave the VPC
        cloud.scf("UpdateFunctionConfiguration", params)
        wait_active(cloud, fn.name)
        if said:
            verb = "configuration would be updated" if dry else "configuration updated"
            done.append(f"{verb} ({'; '.join(said)})")
    cloud.say(f"function {fn.name}: {'; '.join(done) or 'up to date'}")


def wait_active(cloud: Cloud, name: str, limit_s: float = ACTIVE_WAIT_S) -> None:
    """Poll GetFunction until the function is Active: SCF takes no change while it is Creating or
    Updating. A failed state is refused with SCF's reasons."""
    if cloud.dry_run:
        return
    end, pause, status = time.monotonic() + limit_s, 0.1, None
    while time.monotonic() < end:
        found = get_function(cloud, name) or {}
        status = found.get("Status")
        if status == "Active":
            return
        if status and "Failed" in status:
            reasons = "; ".join(str(r.get("ErrorMessage") or r) for r in found.get("StatusReasons") or [])
            raise Refused(f"function {name}: {status}{f' ({reasons})' if reasons else ''}; "
                          f"{found.get('StatusDesc') or 'see the SCF console'}")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    raise Refused(f"function {name}: still {status} after {limit_s:g} s; deploy again once it is "
                  "Active")


def remove_function(cloud: Cloud, name: str) -> None:
    """Delete our triggers, then the function, and wait until it is gone (its role goes next)."""
    dry = cloud.dry_run
    found = get_function(cloud, name)
    listed = {t.get("TriggerName"): t for t in (list_triggers(cloud, name) if found else [])}
    for trigger_name in OURS:
        trigger = listed.get(trigger_name)
        if trigger is None:
            cloud.say(f"trigger {trigger_name}: already gone")
            continue
        delete_trigger(cloud, name, trigger)
        cloud.say(f"trigger {trigger_name}: {'would be deleted' if dry else 'deleted'}")
    if found is None:
        cloud.say(f"function {name}: already gone")
        return
    cloud.scf("DeleteFunction", {"FunctionName": name, "Namespace": NAMESPACE})
    if not dry:
        end = time.monotonic() + GONE_WAIT_S
        while get_function(cloud, name) is not None:
            if time.monotonic() >= end:
                raise Refused(f"function {name}: still there {GONE_WAIT_S:g} s after DeleteFunction; "
                              "run teardown again")
            time.sleep(0.5)
    cloud.say(f"function {name}: {'would be deleted' if dry else 'deleted'}")
