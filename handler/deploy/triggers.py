"""The function's triggers: the pull and sweep timers, and with --function-url its URL. SCF
updates no trigger in place: one that differs is deleted and created again; one of ours that is no
longer asked for (a function URL dropped) is deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handler.deploy.cloud import Cloud
from handler.deploy.documents import NAMESPACE


@dataclass(frozen=True)
class Trigger:
    name: str
    type: str
    desc: str
    argument: str | None = None


# SCF cron has seven fields, seconds first; the argument reaches the function as the timer event's
# Message (doc 583/31439), which tells a pull tick from a sweep (handler.ingress).
TIMERS = (Trigger("autoretry-pull", "timer", "0 * * * * * *", "pull"),
          Trigger("autoretry-sweep", "timer", "30 * * * * * *", "sweep"))
# A function URL (doc 583/100227): public, no CAM auth (a topic cannot sign); the function's own
# AUTORETRY_AUTH_TOKEN guards it.
URL = Trigger("autoretry-url", "http", json.dumps(
    {"AuthType": "NONE", "NetConfig": {"EnableIntranet": False, "EnableExtranet": True}},
    separators=(",", ":")))
OURS = {t.name: t for t in (*TIMERS, URL)}


def list_triggers(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        answer = cloud.scf("ListTriggers", {"FunctionName": name, "Namespace": NAMESPACE,
                                            "Offset": len(found), "Limit": 100})
        page = answer.get("Triggers") or []
        found += page
        if not page or len(found) >= int(answer.get("TotalCount") or 0):
            return found


def trigger_changes(found: dict[str, Any], wanted: Trigger) -> list[str]:
    """What differs between a trigger SCF lists and the one asked for. SCF may list a timer's
    TriggerDesc as `{"cron": "..."}` and add fields (the URL) to an http one: neither is a change."""
    changed = []
    if found.get("Type") != wanted.type:
        changed.append("Type")
    if _desc(found.get("TriggerDesc"), wanted.type) != _desc(wanted.desc, wanted.type):
        changed.append("TriggerDesc")
    if wanted.type == "timer" and (found.get("CustomArgument") or "") != (wanted.argument or ""):
        changed.append("CustomArgument")
    if str(found.get("Enable", 1)).upper() not in ("1", "OPEN", "TRUE"):
        changed.append("Enable")
    return changed


def _desc(desc: Any, kind: str) -> Any:
    parsed: Any = desc
    if isinstance(desc, str):
        try:
            parsed = json.loads(desc)
        except ValueError:
            parsed = desc
    if kind == "timer":
        cron = parsed.get("cron") if isinstance(parsed, dict) else parsed
        return " ".join(str(cron or "").split())
    if isinstance(parsed, dict):
        return {k: parsed.get(k) for k in ("AuthType", "NetConfig")}
    return parsed


def url_in(desc: Any) -> str | None:
    """The first string starting with http in an http trigger's TriggerDesc (Tencent documents no
    field for the function URL's address)."""
    try:
        parsed = json.loads(desc) if isinstance(desc, str) else desc
    except ValueError:
        return None
    stack = [parsed]
    while stack:
        value = stack.pop(0)
        if isinstance(value, str) and value.startswith("http"):
            return value
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def ensure_triggers(cloud: Cloud, name: str, wanted: list[Trigger], exists: bool, appid: str) -> None:
    """Each trigger asked for, created or replaced where it differs (SCF updates no trigger in
    place); one of ours not asked for (a function URL dropped) is deleted."""
    listed = {t.get("TriggerName"): t for t in (list_triggers(cloud, name) if exists else [])}
    dry = cloud.dry_run
    for trigger in wanted:
        found = listed.get(trigger.name)
        changed = trigger_changes(found, trigger) if found is not None else []
        if found is not None and not changed:
            cloud.say(f"trigger {trigger.name}: up to date")
            desc = found.get("TriggerDesc")
        else:
            if found is not None:
                delete_trigger(cloud, name, found)
            answer = cloud.scf("CreateTrigger", _create_params(name, trigger))
            desc = (answer.get("TriggerInfo") or {}).get("TriggerDesc")
            outcome = "created" if found is None else f"replaced ({', '.join(changed)})"
            cloud.say(f"trigger {trigger.name}: {'would be ' + outcome if dry else outcome}")
        if trigger.type == "http" and not dry:
            _say_url(cloud, url_in(desc), appid, created=found is None or bool(changed))
    for trigger_name, found in listed.items():
        if trigger_name in OURS and all(t.name != trigger_name for t in wanted):
            delete_trigger(cloud, name, found)
            cloud.say(f"trigger {trigger_name}: {'would be deleted' if dry else 'deleted'} "
                      "(not asked for)")


def _create_params(name: str, trigger: Trigger) -> dict[str, Any]:
    params = {"FunctionName": name, "TriggerName": trigger.name, "Type": trigger.type,
              "TriggerDesc": trigger.desc, "Namespace": NAMESPACE, "Qualifier": "$DEFAULT",
              "Enable": "OPEN"}
    if trigger.argument is not None:
        params["CustomArgument"] = trigger.argument
    return params


def delete_trigger(cloud: Cloud, name: str, found: dict[str, Any]) -> None:
    params = {"FunctionName": name, "TriggerName": found.get("TriggerName"), "Type": found.get("Type"),
              "Namespace": NAMESPACE, "TriggerDesc": found.get("TriggerDesc")}
    if found.get("Qualifier"):
        params["Qualifier"] = found["Qualifier"]
    cloud.scf("DeleteTrigger", params)


def _say_url(cloud: Cloud, url: str | None, appid: str, created: bool) -> None:
    if url:
        cloud.say(f"function URL: {url}")
        return
    where = f"https://{appid}-<id>.{cloud.region}.tencentscf.com"
    cloud.say(f"function URL {'created' if created else 'exists'}; find its address in the SCF "
              f"console (Function URL) — {where}")
