"""The CAM documents of a deployment: the role's trust policy (SCF may assume it) and its policy,
granting exactly what the function calls, on exactly its own resources; and the policy of the
sub-user whose key the function uses outside Tencent (`key_policy`, AWS Lambda).

The function calls: the Batch actions of handler.gateway.RATE_LIMITS (Batch names no resource
finer than `*` for them); TDMQ-CMQ's receive and delete on its one queue (handler/cmq.py); SCF's
InvokeFunction on itself, for its continuations (handler/continuation.py; Tencent's CAM name for the
`Invoke` API, docs 583/38177 and 583/18014); and, only when it writes the retries a job spent onto
the job (AUTORETRY_ACCOUNT_UIN, handler/tags.py), the Tag service's TagResources. On Lambda a
continuation is Lambda's own: the key's policy has no InvokeFunction.

deploy/scf/cam-policy.json is `role_policy` with placeholders (a test holds them equal), for a
role made by hand.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from handler.gateway import RATE_LIMITS

NAMESPACE = "default"
# The trust policy of a role SCF's functions run with: the principal is the SCF service (the form
# of CAM's UpdateAssumeRolePolicy example, `"principal":{"service":[...]}`, and of Tencent's own
# Terraform provider tests for an SCF role).
TRUST_POLICY: dict[str, Any] = {"version": "2.0", "statement": [{
    "action": "name/sts:AssumeRole", "effect": "allow", "principal": {"service": ["scf.qcloud.com"]}}]}
QUEUE_ACTIONS = ("BatchReceiveMessage", "BatchDeleteMessage")
# What deploy/scf/cam-policy.json says in place of the deployment's own values.
PLACEHOLDERS = {"region": "ap-guangzhou", "uin": "OWNER_UIN", "queue": "batch-autoretry",
                "function": "batch-autoretry-*"}


def role_policy(region: str, uin: str, queue: str, function: str, tag_jobs: bool = False
                ) -> dict[str, Any]:
    """The role's policy for the function `function` (in the default namespace) of account `uin`
    (the owner's UIN, which resource names carry) in `region`, pulling `queue`."""
    return _policy(region, uin, queue, _allow(
        ["name/scf:InvokeFunction"],
        f"qcs::scf:{region}:uin/{uin}:namespace/{NAMESPACE}/function/{function}"), tag_jobs)


def key_policy(region: str, uin: str, queue: str, tag_jobs: bool = False) -> dict[str, Any]:
    """The policy of the sub-user whose key the function uses outside Tencent: the role's, but for
    SCF's InvokeFunction (a Lambda function continues as Lambda does)."""
    return _policy(region, uin, queue, None, tag_jobs)


def _policy(region: str, uin: str, queue: str, invoke: dict[str, Any] | None, tag_jobs: bool
            ) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        _allow([f"name/batch:{action}" for action in RATE_LIMITS], "*"),
        _allow([f"name/tdmq:{action}" for action in QUEUE_ACTIONS],
               f"qcs::tdmq:{region}:uin/{uin}:queue/{queue}"),
    ]
    if invoke is not None:
        statements.append(invoke)
    if tag_jobs:
        statements.append(_allow(["name/tag:TagResources"], "*"))
    return {"version": "2.0", "statement": statements}


def _allow(actions: list[str], resource: str) -> dict[str, Any]:
    return {"effect": "allow", "action": actions, "resource": [resource]}


def text(document: dict[str, Any]) -> str:
    """A document as CAM takes it: a JSON string."""
    return json.dumps(document, separators=(",", ":"))


def same_document(found: str | dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether the document CAM returned means `wanted`. CAM may hand a document back spelled
    otherwise: URL-encoded, a single action or resource as a string rather than a list, keys in
    another order; none of that is a change."""
    if found is None:
        return False
    try:
        return _canonical(found) == _canonical(wanted)
    except ValueError:  # not JSON at all: certainly not the document asked for
        return False


def _canonical(document: str | dict[str, Any]) -> str:
    if isinstance(document, str):
        raw = document.strip()
        if raw[:3].upper() == "%7B":
            raw = urllib.parse.unquote(raw)
        document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("a policy document is a JSON object")
    statements = document.get("statement") or []
    statements = [statements] if isinstance(statements, dict) else statements
    canon = sorted(json.dumps(_statement(s), sort_keys=True) for s in statements)
    return json.dumps({"version": str(document.get("version", "")), "statement": canon})


def _statement(statement: Any) -> Any:
    if not isinstance(statement, dict):
        return statement
    out: dict[str, Any] = {}
    for key, value in statement.items():
        key = key.lower()
        if key == "principal" and isinstance(value, dict):
            value = {k: sorted(_listed(v)) for k, v in value.items()}
        elif key in ("action", "resource"):
            value = sorted(_listed(value))
        elif key == "effect" and isinstance(value, str):
            value = value.lower()
        out[key] = value
    return out


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or [])
