"""A CAM policy of the deployment and the one it is attached to: the function's role (`deploy scf`)
or the sub-user whose key the function uses outside Tencent (`deploy key`). The policy is the
account's own (Local) one, found by its name, made to hold exactly the document asked (created, or
updated in place), and attached once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handler.deploy.cloud import Cloud
from handler.deploy.documents import same_document, text

PAGE = 200  # ListPolicies' and ListAttached*Policies' largest page (Rp)


@dataclass(frozen=True)
class Holder:
    """Who a policy is attached to, in the words of CAM's calls for it: a role by its name
    (ListAttachedRolePolicies' RoleName, AttachRoleName, DetachRoleName) or a sub-user by its UIN
    (ListAttachedUserPolicies' TargetUin, AttachUin, DetachUin)."""

    kind: str  # "Role" or "User": Attach<kind>Policy, ...
    listed_by: str
    attach_by: str
    detach_by: str
    value: Any  # the role's name, the user's UIN (a placeholder in a dry run that creates it)


def role_holder(role: str) -> Holder:
    return Holder("Role", "RoleName", "AttachRoleName", "DetachRoleName", role)


def user_holder(uin: Any) -> Holder:
    return Holder("User", "TargetUin", "AttachUin", "DetachUin", uin)


def ensure_policy(cloud: Cloud, name: str, document: dict[str, Any], description: str
                  ) -> tuple[int | None, bool, list[str]]:
    """The policy `name` holding `document`. Returns its id (None only when a dry run would create
    it), whether it is created now, and what changed (["PolicyDocument"] or nothing)."""
    policy_id = policy_of(cloud, name)
    if policy_id is None:
        made = cloud.cam("CreatePolicy", {"PolicyName": name, "PolicyDocument": text(document),
                                          "Description": description})
        return made.get("PolicyId"), True, ["PolicyDocument"]
    current = cloud.cam("GetPolicy", {"PolicyId": policy_id}).get("PolicyDocument")
    if same_document(current, document):
        return policy_id, False, []
    cloud.cam("UpdatePolicy", {"PolicyId": policy_id, "PolicyDocument": text(document)})
    return policy_id, False, ["PolicyDocument"]


def ensure_attached(cloud: Cloud, holder: Holder, policy_id: int | None, *, holder_exists: bool
                    ) -> bool:
    """Attach the policy unless it is attached; True when it attaches (or, in a dry run, would)."""
    if holder_exists and policy_id is not None and attached(cloud, holder, policy_id):
        return False
    # Only a dry run has no id here: CreatePolicy was not called.
    shown_id = policy_id if policy_id is not None else "<the PolicyId CreatePolicy returns>"
    cloud.cam(f"Attach{holder.kind}Policy", {"PolicyId": shown_id, holder.attach_by: holder.value})
    return True


def remove_policy(cloud: Cloud, name: str, holder: Holder | None) -> None:
    """Detach the policy from `holder` (None: it is gone) and delete it; one line says which."""
    policy_id = policy_of(cloud, name)
    if policy_id is None:
        cloud.say(f"policy {name}: already gone")
        return
    if holder is not None and attached(cloud, holder, policy_id):
        cloud.cam(f"Detach{holder.kind}Policy", {"PolicyId": policy_id, holder.detach_by: holder.value})
    cloud.cam("DeletePolicy", {"PolicyId": [policy_id]})
    cloud.say(f"policy {name}: {'would be deleted' if cloud.dry_run else 'deleted'}")


def policy_of(cloud: Cloud, name: str) -> int | None:
    """The id of the account's own (Local) policy called `name`."""
    page = 1
    while True:
        answer = cloud.cam("ListPolicies", {"Rp": PAGE, "Page": page, "Scope": "Local",
                                            "Keyword": name})
        listed = answer.get("List") or []
        for policy in listed:
            if policy.get("PolicyName") == name and policy.get("PolicyId") is not None:
                return int(policy["PolicyId"])
        if len(listed) < PAGE or page * PAGE >= int(answer.get("TotalNum") or 0):
            return None
        page += 1


def attached(cloud: Cloud, holder: Holder, policy_id: int) -> bool:
    page = 1
    while True:
        answer = cloud.cam(f"ListAttached{holder.kind}Policies",
                           {"Page": page, "Rp": PAGE, holder.listed_by: holder.value})
        listed = answer.get("List") or []
        if any(str(p.get("PolicyId")) == str(policy_id) for p in listed):
            return True
        if len(listed) < PAGE or page * PAGE >= int(answer.get("TotalNum") or 0):
            return False
        page += 1


def outcome(cloud: Cloud, created: bool, changed: list[str]) -> str:
    """'created', 'up to date' or 'updated (what)', as a dry run would say it."""
    if created:
        return "would be created" if cloud.dry_run else "created"
    if not changed:
        return "up to date"
    return f"{'would be updated' if cloud.dry_run else 'updated'} ({'; '.join(changed)})"
