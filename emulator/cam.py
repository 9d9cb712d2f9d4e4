"""CAM (API 3.0 `cam`, 2019-01-16): the roles, sub-users and policies `python -m handler deploy`
writes (`deploy scf` a role, `deploy key` a sub-user with an API key).

The actions, their answers' fields (the SDK's `<Action>Response` models, `tencentcloud.cam.v20190116`)
and the error codes are CAM's: each code below is one the SDK's client lists for that action
(tencentcloud-sdk-go `cam/v20190116/client.go`, "可能返回的错误码", which copies the API pages).
Where CAM lists no code for a case, the emulator does what the console says CAM does: deleting a role
or a policy detaches it from everything; attaching an attached policy and detaching one that is not
attached change nothing and succeed; listing the policies of an absent role or user lists none.

A sub-user made with UseApi 1 gets an API key (AddUser answers it, once): the key is registered
with the emulator's signature check (the shared `secrets` mapping, as SCF registers a role's
temporary key), so a client may sign any call with it; deleting the user (DeleteUser with Force 1,
else OperationDenied.HaveKeys) revokes it. CAM's API pages give no rule for a sub-user's name: the
emulator takes the role's (1 to 128 of letters, digits and +=,.@-_). Permissions are not enforced:
the emulator checks who signed, not what a policy allows.

A policy document (CreatePolicy, UpdatePolicy) and a role's trust policy (CreateRole,
UpdateAssumeRolePolicy) are checked as CAM's policy syntax has them: a JSON object with
"version": "2.0" and a non-empty "statement" list whose elements each have an "effect" (allow or
deny) and an "action"; a permission statement also names a "resource", a trust statement a
"principal".
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from emulator.api import ApiError, answer_by_method

VERSION = "2019-01-16"
SERVICE = "cam"
APP_ID = 1300000001  # the emulator's account AppId (GetUserAppId), beside its Uin
MAX_PAGE_SIZE, MAX_PAGE = 200, 200  # ListPolicies: Rp 1..200, Page 1..200 (SDK model docstring)
MAX_DESCRIPTION_BYTES = 300  # InvalidParameter.DescriptionLengthOverlimit: "不能大于300字节"
_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,128}$")  # RoleName and PolicyName (SDK model docstring)
_FIRST_ROLE_ID, _FIRST_POLICY_ID = 4611686018427397900, 200000001  # CAM's ids look like these
_FIRST_USER_UIN, _FIRST_USER_UID = 100030000001, 11000001
_KEY_CHARS = string.ascii_letters + string.digits


@dataclass
class Role:
    role_id: str
    name: str
    document: str
    description: str
    console_login: int
    session_duration: int
    added: str
    updated: str


@dataclass
class Policy:
    policy_id: int
    name: str
    document: str
    description: str
    added: str
    updated: str


@dataclass
class User:
    uin: int
    uid: int
    name: str
    remark: str
    console_login: int
    secret_id: str  # "" without an API key (UseApi 0)
    secret_key: str
    added: str


@dataclass
class Attachment:
    policy_id: int
    added: str


class Cam:
    """One account's roles (by name), sub-users (by name), custom policies (by id) and the policies
    attached to each role (by role name) and to each user (by UIN), then by policy id, in the order
    they were attached. `secrets_` is the signature check's SecretId → SecretKey mapping, where a
    sub-user's API key is registered while the user exists."""

    def __init__(self, uin: str, app_id: int = APP_ID, clock: Callable[[], float] = time.time, *,
                 secrets_: MutableMapping[str, str] | None = None) -> None:
        self.uin, self.app_id, self.clock = uin, app_id, clock
        self.secrets: MutableMapping[str, str] = {} if secrets_ is None else secrets_
        self.roles: dict[str, Role] = {}
        self.users: dict[str, User] = {}
        self.policies: dict[int, Policy] = {}
        self.attachments: dict[str, dict[int, Attachment]] = {}
        self.user_attachments: dict[int, dict[int, Attachment]] = {}
        self._role_ids = itertools.count(_FIRST_ROLE_ID)
        self._policy_ids = itertools.count(_FIRST_POLICY_ID)
        self._user_uins = (n for n in itertools.count(_FIRST_USER_UIN) if str(n) != uin)
        self._user_uids = itertools.count(_FIRST_USER_UID)
        self._lock = threading.Lock()

    # --- what tests look at -----------------------------------------------------------------------
    def role(self, name: str) -> Role | None:
        with self._lock:
            return self.roles.get(name)

    def policy_named(self, name: str) -> Policy | None:
        with self._lock:
            return next((p for p in self.policies.values() if p.name == name), None)

    def attached(self, role_name: str) -> list[str]:
        """Names of the policies attached to the role, in the order they were attached."""
        with self._lock:
            return [self.policies[a.policy_id].name for a in self.attachments.get(role_name, {}).values()]

    def user(self, name: str) -> User | None:
        with self._lock:
            return self.users.get(name)

    def user_attached(self, name: str) -> list[str]:
        """Names of the policies attached to the sub-user, in the order they were attached."""
        with self._lock:
            user = self.users.get(name)
            attached = self.user_attachments.get(user.uin, {}) if user else {}
            return [self.policies[a.policy_id].name for a in attached.values()]

    # --- the API ----------------------------------------------------------------------------------
    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return answer_by_method(self, "cam", action, params, self._lock)

    def _api_GetUserAppId(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"Uin": self.uin, "OwnerUin": self.uin, "AppId": self.app_id}

    def _api_GetRole(self, p: dict[str, Any]) -> dict[str, Any]:
        role = self._role(p, "RoleId", "RoleName")
        return {"RoleInfo": {
            "RoleId": role.role_id, "RoleName": role.name, "PolicyDocument": role.document,
            "Description": role.description, "AddTime": role.added, "UpdateTime": role.updated,
            "ConsoleLogin": role.console_login, "RoleType": "user",
            "SessionDuration": role.session_duration, "Tags": [],
            "RoleArn": f"qcs::cam::uin/{self.uin}:roleName/{role.name}"}}

    def _api_CreateRole(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _cam_name(p.get("RoleName"), "RoleName", "InvalidParameter.RoleNameError")
        if name in self.roles:
            raise ApiError("InvalidParameter.RoleNameInUse", f"a role named {name} already exists")
        document = _checked_document(p.get("PolicyDocument"), trust=True)
        description = _description(p)
        now = self._now()
        role = Role(str(next(self._role_ids)), name, document, description,
                    int(p.get("ConsoleLogin") or 0), int(p.get("SessionDuration") or 0), now, now)
        self.roles[name] = role
        self.attachments[name] = {}
        return {"RoleId": role.role_id}

    def _api_UpdateAssumeRolePolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        role = self._role(p, "RoleId", "RoleName")
        role.document = _checked_document(p.get("PolicyDocument"), trust=True)
        role.updated = self._now()
        return {}

    def _api_DeleteRole(self, p: dict[str, Any]) -> dict[str, Any]:
        role = self._role(p, "RoleId", "RoleName")
        del self.roles[role.name]
        self.attachments.pop(role.name, None)
        return {}

    def _api_ListPolicies(self, p: dict[str, Any]) -> dict[str, Any]:
        size, page = _paging(p, "Rp", "Page")
        scope = p.get("Scope") or "All"
        if scope not in ("All", "QCS", "Local"):
            raise ApiError("InvalidParameter.ScopeError", "Scope is All, QCS or Local")
        keyword = p.get("Keyword") or ""
        # The emulator's account has no preset (QCS) policies: every policy here is a custom one.
        found = [] if scope == "QCS" else [q for q in self.policies.values() if keyword in q.name]
        start = (page - 1) * size
        return {"TotalNum": len(found), "ServiceTypeList": [], "List": [
            {"PolicyId": q.policy_id, "PolicyName": q.name, "AddTime": q.added, "UpdateTime": q.updated,
             "Type": 1, "Description": q.description, "CreateMode": 2, "Attachments": 0,
             "ServiceType": "", "IsServiceLinkedPolicy": 0, "AttachEntityCount": self._uses(q),
             "AttachEntityBoundaryCount": 0, "Tags": []}
            for q in found[start:start + size]]}

    def _api_CreatePolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _policy_name(p.get("PolicyName"))
        if any(q.name == name for q in self.policies.values()):
            raise ApiError("FailedOperation.PolicyNameInUse", f"a policy named {name} already exists")
        document = _checked_document(p.get("PolicyDocument"), trust=False)
        now = self._now()
        policy = Policy(next(self._policy_ids), name, document, _description(p), now, now)
        self.policies[policy.policy_id] = policy
        return {"PolicyId": policy.policy_id}

    def _api_GetPolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        q = self._policy_by_id(p.get("PolicyId"))
        return {"PolicyName": q.name, "Description": q.description, "Type": 1, "AddTime": q.added,
                "UpdateTime": q.updated, "PolicyDocument": q.document, "PresetAlias": "",
                "IsServiceLinkedRolePolicy": 0, "Tags": []}

    def _api_UpdatePolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        """The policy named by PolicyId (then a PolicyName renames it) or else by PolicyName."""
        by_name = p.get("PolicyId") is None
        if by_name:
            q = self._policy_by_name(p.get("PolicyName"), "ResourceNotFound.NotFound")
            name = q.name
        else:
            q = self._policy_by_id(p.get("PolicyId"))
            name = q.name if p.get("PolicyName") in (None, q.name) else _policy_name(p["PolicyName"])
            if name != q.name and any(other.name == name for other in self.policies.values()):
                raise ApiError("FailedOperation.PolicyNameInUse", f"a policy named {name} already exists")
        document = (_checked_document(p["PolicyDocument"], trust=False)
                    if p.get("PolicyDocument") is not None else q.document)
        description = _description(p) if p.get("Description") is not None else q.description
        q.name, q.document, q.description, q.updated = name, document, description, self._now()
        return {"PolicyId": q.policy_id} if by_name else {}

    def _api_DeletePolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        ids = p.get("PolicyId")
        if not isinstance(ids, list) or not ids:
            raise ApiError("InvalidParameter.ParamError", "PolicyId must list at least one policy id")
        doomed = [self._policy_by_id(i) for i in ids]  # every id exists, or nothing is deleted
        for q in doomed:
            self.policies.pop(q.policy_id, None)
            for attached in [*self.attachments.values(), *self.user_attachments.values()]:
                attached.pop(q.policy_id, None)
        return {}

    def _api_ListAttachedRolePolicies(self, p: dict[str, Any]) -> dict[str, Any]:
        size, page = _paging(p, "Rp", "Page")
        role = self._find_role(p, "RoleId", "RoleName")  # none: nothing attached (CAM lists no code)
        kind = p.get("PolicyType")
        keyword = p.get("Keyword") or ""
        attached = [] if role is None or kind == "QCS" else list(self.attachments[role.name].values())
        found = [(a, q) for a in attached if keyword in (q := self.policies[a.policy_id]).name]
        start = (page - 1) * size
        return {"TotalNum": len(found), "List": [
            {"PolicyId": q.policy_id, "PolicyName": q.name, "AddTime": a.added, "PolicyType": "User",
             "CreateMode": 2, "Deactived": 0, "DeactivedDetail": [], "Description": q.description}
            for a, q in found[start:start + size]]}

    def _api_AttachRolePolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        q = self._attached_policy(p)
        role = self._role(p, "AttachRoleId", "AttachRoleName")
        self.attachments[role.name].setdefault(q.policy_id, Attachment(q.policy_id, self._now()))
        return {}

    def _api_DetachRolePolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        q = self._attached_policy(p)
        role = self._role(p, "DetachRoleId", "DetachRoleName")
        self.attachments[role.name].pop(q.policy_id, None)
        return {}

    # --- sub-users --------------------------------------------------------------------------------
    def _api_AddUser(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _cam_name(p.get("Name"), "Name", "InvalidParameter.UserNameIllegal")
        if name in self.users:
            raise ApiError("InvalidParameter.SubUserNameInUse", f"a sub-user named {name} already exists")
        console_login = int(p.get("ConsoleLogin") or 0)
        # A console user given no password gets a random one, answered once (the SDK model says so).
        password = "".join(secrets.choice(_KEY_CHARS) for _ in range(32)) \
            if console_login and not p.get("Password") else ""
        secret_id = secret_key = ""
        if p.get("UseApi"):
            secret_id = "AKID" + "".join(secrets.choice(_KEY_CHARS) for _ in range(32))
            secret_key = "".join(secrets.choice(_KEY_CHARS) for _ in range(32))
            self.secrets[secret_id] = secret_key
        user = User(next(self._user_uins), next(self._user_uids), name, str(p.get("Remark") or ""),
                    console_login, secret_id, secret_key, self._now())
        self.users[name] = user
        self.user_attachments[user.uin] = {}
        return {"Uin": user.uin, "Name": name, "Password": password, "SecretId": secret_id,
                "SecretKey": secret_key, "Uid": user.uid, "PhoneNumVerifyLink": ""}

    def _api_GetUser(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self._user(p.get("Name"))
        return {"Uin": user.uin, "Name": user.name, "Uid": user.uid, "Remark": user.remark,
                "ConsoleLogin": user.console_login, "PhoneNum": "", "CountryCode": "", "Email": "",
                "RecentlyLoginIP": "", "RecentlyLoginTime": ""}

    def _api_DeleteUser(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self._user(p.get("Name"))
        if user.secret_id and p.get("Force") != 1:
            raise ApiError("OperationDenied.HaveKeys",
                           f"the sub-user {user.name} has an API key: delete it first, or pass Force 1")
        if user.secret_id:
            self.secrets.pop(user.secret_id, None)
        del self.users[user.name]
        self.user_attachments.pop(user.uin, None)
        return {}

    def _api_ListAttachedUserPolicies(self, p: dict[str, Any]) -> dict[str, Any]:
        size, page = _paging(p, "Rp", "Page")
        uin = p.get("TargetUin")
        if not isinstance(uin, int) or isinstance(uin, bool):
            raise ApiError("InvalidParameter.ParamError", "TargetUin must be the sub-user's UIN")
        found = list(self.user_attachments.get(uin, {}).values())  # none: nothing attached
        start = (page - 1) * size
        return {"TotalNum": len(found), "List": [
            {"PolicyId": a.policy_id, "PolicyName": (q := self.policies[a.policy_id]).name,
             "AddTime": a.added, "CreateMode": 2, "PolicyType": "User", "Remark": q.description,
             "OperateOwnerUin": "", "OperateUin": "", "OperateUinType": 0, "Deactived": 0,
             "DeactivedDetail": []}
            for a in found[start:start + size]]}

    def _api_AttachUserPolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        q = self._attached_policy(p)
        user = self._user_by_uin(p.get("AttachUin"))
        self.user_attachments[user.uin].setdefault(q.policy_id, Attachment(q.policy_id, self._now()))
        return {}

    def _api_DetachUserPolicy(self, p: dict[str, Any]) -> dict[str, Any]:
        q = self._attached_policy(p)
        user = self._user_by_uin(p.get("DetachUin"))
        self.user_attachments[user.uin].pop(q.policy_id, None)
        return {}

    # --- lookups ----------------------------------------------------------------------------------
    def _user(self, name: object) -> User:
        if not isinstance(name, str) or not name:
            raise ApiError("InvalidParameter.ParamError", "give the sub-user's Name")
        user = self.users.get(name)
        if user is None:
            raise ApiError("ResourceNotFound.UserNotExist", f"the sub-user {name} does not exist")
        return user

    def _user_by_uin(self, uin: object) -> User:
        user = next((u for u in self.users.values() if u.uin == uin), None)
        if user is None:
            raise ApiError("ResourceNotFound.UserNotExist", f"the sub-user {uin} does not exist")
        return user

    def _role(self, p: dict[str, Any], id_key: str, name_key: str) -> Role:
        role = self._find_role(p, id_key, name_key)
        if role is None:
            raise ApiError("InvalidParameter.RoleNotExist",
                           f"the role {p.get(name_key) or p.get(id_key)} does not exist")
        return role

    def _find_role(self, p: dict[str, Any], id_key: str, name_key: str) -> Role | None:
        role_id, name = p.get(id_key), p.get(name_key)
        if not role_id and not name:
            raise ApiError("InvalidParameter.ParamError", f"give {name_key} or {id_key}")
        if name:
            return self.roles.get(name)
        return next((r for r in self.roles.values() if r.role_id == role_id), None)

    def _policy_by_id(self, policy_id: object) -> Policy:
        if not isinstance(policy_id, int) or isinstance(policy_id, bool) or policy_id <= 0:
            raise ApiError("InvalidParameter.PolicyIdError", "PolicyId must be a policy's id")
        q = self.policies.get(policy_id)
        if q is None:
            raise ApiError("ResourceNotFound.PolicyIdNotFound", f"the policy {policy_id} does not exist")
        return q

    def _policy_by_name(self, name: object, absent: str) -> Policy:
        if not isinstance(name, str) or not name:
            raise ApiError("InvalidParameter.ParamError", "give PolicyId or PolicyName")
        q = next((q for q in self.policies.values() if q.name == name), None)
        if q is None:
            raise ApiError(absent, f"the policy {name} does not exist")
        return q

    def _attached_policy(self, p: dict[str, Any]) -> Policy:
        # Attach/DetachRolePolicy name an absent policy InvalidParameter.PolicyIdNotExist, by id or name.
        if p.get("PolicyId") is None:
            return self._policy_by_name(p.get("PolicyName"), "InvalidParameter.PolicyIdNotExist")
        q = self.policies.get(p["PolicyId"])
        if q is None:
            raise ApiError("InvalidParameter.PolicyIdNotExist", f"the policy {p['PolicyId']} does not exist")
        return q

    def _uses(self, q: Policy) -> int:
        return sum(1 for attached in [*self.attachments.values(), *self.user_attachments.values()]
                   if q.policy_id in attached)

    def _now(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.clock()))


def _policy_name(name: object) -> str:
    return _cam_name(name, "PolicyName", "InvalidParameter.PolicyNameError")


def _cam_name(name: object, field: str, code: str) -> str:
    """A role's, a policy's or a sub-user's name: 1 to 128 of CAM's characters, else `code`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError(code, f"{field} must be 1 to 128 letters, digits or +=,.@-_")
    return name


def _description(p: dict[str, Any]) -> str:
    description = p.get("Description") or ""
    if len(str(description).encode()) > MAX_DESCRIPTION_BYTES:
        raise ApiError("InvalidParameter.DescriptionLengthOverlimit",
                       f"Description is at most {MAX_DESCRIPTION_BYTES} bytes")
    return str(description)


def _paging(p: dict[str, Any], size_key: str, page_key: str) -> tuple[int, int]:
    size, page = p.get(size_key, 20), p.get(page_key, 1)
    if not (isinstance(size, int) and 0 < size <= MAX_PAGE_SIZE and isinstance(page, int)
            and 0 < page <= MAX_PAGE):
        raise ApiError("InvalidParameter.ParamError",
                       f"{size_key} is 1 to {MAX_PAGE_SIZE} and {page_key} 1 to {MAX_PAGE}")
    return size, page


def _checked_document(document: object, *, trust: bool) -> str:
    """The document, unchanged, if CAM's policy syntax accepts it; else CAM's code for what is wrong."""
    try:
        parsed = json.loads(document) if isinstance(document, str) else None
    except ValueError:
        parsed = None
    if not isinstance(document, str) or not isinstance(parsed, dict):
        raise ApiError("InvalidParameter.PolicyDocumentError", "PolicyDocument must be a JSON object")
    if parsed.get("version") != "2.0":
        raise ApiError("InvalidParameter.VersionError", 'the policy document\'s "version" must be "2.0"')
    statements = parsed.get("statement")
    if not isinstance(statements, list) or not statements or \
            not all(isinstance(s, dict) for s in statements):
        raise ApiError("InvalidParameter.StatementError",
                       'the policy document\'s "statement" must be a non-empty list of objects')
    for statement in statements:
        _check_statement(statement, trust)
    return document


def _check_statement(statement: dict[str, Any], trust: bool) -> None:
    if str(statement.get("effect", "")).lower() not in ("allow", "deny"):
        raise ApiError("InvalidParameter.EffectError", 'each statement\'s "effect" is allow or deny')
    actions = statement.get("action")
    if not actions:
        raise ApiError("InvalidParameter.ActionMiss", 'each statement needs an "action"')
    for action in actions if isinstance(actions, list) else [actions]:
        if not isinstance(action, str) or (action != "*" and ":" not in action):
            raise ApiError("InvalidParameter.ActionError",
                           f'an "action" is "*" or "<service>:<Action>", not {action!r}')
    if trust and not (isinstance(statement.get("principal"), dict) and statement["principal"]):
        raise ApiError("InvalidParameter.PrincipalError", 'a trust policy\'s statement needs a "principal"')
    if not trust and not statement.get("resource"):
        raise ApiError("InvalidParameter.ResourceError", 'each statement needs a "resource"')
