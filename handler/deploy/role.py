"""The function's CAM role `BatchAutoretry-<function>`: SCF may assume it (the trust policy), and
its one policy of the same name (handler.deploy.documents.role_policy) is attached to it. SCF hands
the function the role's temporary credentials (TENCENTCLOUD_SECRETID, ...SECRETKEY, ...SESSIONTOKEN).
"""

from __future__ import annotations

from typing import Any

from handler.deploy.cloud import Cloud
from handler.deploy.documents import TRUST_POLICY, same_document, text
from handler.deploy.policy import ensure_attached, ensure_policy, outcome, remove_policy, role_holder

DESCRIPTION = "batch-autoretry: what the function {name} calls (python -m handler deploy scf)"


def role_name(function: str) -> str:
    return f"BatchAutoretry-{function}"


def ensure_role(cloud: Cloud, function: str, document: dict[str, Any]) -> str:
    """The role, its policy (`document`) and the attachment as asked; one line says what changed.
    Returns the role's name, what CreateFunction's Role takes."""
    role = role_name(function)
    description = DESCRIPTION.format(name=function)
    found = cloud.find("cam", "GetRole", {"RoleName": role})
    changed: list[str] = []
    if found is None:
        cloud.cam("CreateRole", {"RoleName": role, "PolicyDocument": text(TRUST_POLICY),
                                 "Description": description})
    elif not same_document((found.get("RoleInfo") or {}).get("PolicyDocument"), TRUST_POLICY):
        cloud.cam("UpdateAssumeRolePolicy", {"PolicyDocument": text(TRUST_POLICY), "RoleName": role})
        changed.append("trust policy")
    policy_id, _, policy_changed = ensure_policy(cloud, role, document, description)
    changed += policy_changed
    if ensure_attached(cloud, role_holder(role), policy_id, holder_exists=found is not None):
        changed.append("policy attached")
    cloud.say(f"role {role}: {outcome(cloud, found is None, changed)}")
    return role


def remove_role(cloud: Cloud, function: str) -> None:
    """Detach and delete the policy, then delete the role; what is not there is 'already gone'."""
    role = role_name(function)
    found = cloud.find("cam", "GetRole", {"RoleName": role})
    remove_policy(cloud, role, role_holder(role) if found is not None else None)
    if found is None:
        cloud.say(f"role {role}: already gone")
        return
    cloud.cam("DeleteRole", {"RoleName": role})
    cloud.say(f"role {role}: {'would be deleted' if cloud.dry_run else 'deleted'}")
