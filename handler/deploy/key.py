"""The Tencent key of the function outside Tencent (AWS Lambda, which can assume no Tencent role): a
CAM sub-user `BatchAutoretry-<name>` that may not log in to the console, with an API key and one
policy, `BatchAutoretry-<name>-key` (handler.deploy.documents.key_policy), attached.

AddUser answers the key once; CAM never shows its SecretKey again. So it goes straight into the key
file, never the output: the JSON the function's secret store holds (handler/secrets.py),
{"SecretId": …, "SecretKey": …}, in a file made with mode 0600 before the user is (never over a file
that exists), so a key CAM answers always has a place to go.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from handler.commands import Refused, UsageError
from handler.deploy.cloud import Cloud
from handler.deploy.policy import ensure_attached, ensure_policy, outcome, remove_policy, user_holder

REMARK = "batch-autoretry: the key of {name} outside Tencent (python -m handler deploy key)"
DESCRIPTION = "batch-autoretry: what {name} calls with its key (python -m handler deploy key)"
NEW_UIN = "<the Uin AddUser returns>"


def user_name(name: str) -> str:
    return f"BatchAutoretry-{name}"


def policy_name(name: str) -> str:
    """Its own name: never the role's policy of `deploy scf` for the same name."""
    return f"BatchAutoretry-{name}-key"


def ensure_key(cloud: Cloud, name: str, document: dict[str, Any], key_file: Path) -> None:
    """The sub-user (with its key, written to `key_file`, when it is made now), its policy holding
    `document`, and the attachment; one line for the user, one for the policy."""
    user = user_name(name)
    found = cloud.find("cam", "GetUser", {"Name": user})
    if found is None:
        uin = _create_user(cloud, user, name, key_file)
    else:
        uin = found.get("Uin")
        cloud.say(f"user {user}: up to date (its key went to the key file when the user was created, "
                  f"and CAM cannot show it again; a new one is made in the CAM console: Users → {user}"
                  " → API key)")
    policy = policy_name(name)
    policy_id, created, changed = ensure_policy(cloud, policy, document,
                                                DESCRIPTION.format(name=name))
    attaching = ensure_attached(cloud, user_holder(uin), policy_id, holder_exists=found is not None)
    said = outcome(cloud, created, [*changed, *([f"attached to {user}"] if attaching else [])])
    if created:
        said += f", {'would be ' if cloud.dry_run else ''}attached to {user}"
    cloud.say(f"policy {policy}: {said}")


def remove_key(cloud: Cloud, name: str) -> None:
    """Detach and delete the policy, then delete the user and its key; what is not there is
    'already gone'."""
    user = user_name(name)
    found = cloud.find("cam", "GetUser", {"Name": user})
    remove_policy(cloud, policy_name(name), user_holder(found.get("Uin")) if found else None)
    if found is None:
        cloud.say(f"user {user}: already gone")
        return
    # Force 1: its API key goes with it (without, CAM refuses a user with a key: HaveKeys).
    cloud.cam("DeleteUser", {"Name": user, "Force": 1})
    cloud.say(f"user {user}: {'would be deleted' if cloud.dry_run else 'deleted'}, its key with it")


def _create_user(cloud: Cloud, user: str, name: str, key_file: Path) -> Any:
    params = {"Name": user, "Remark": REMARK.format(name=name), "ConsoleLogin": 0, "UseApi": 1}
    if cloud.dry_run:
        _check_creatable(key_file)
        cloud.cam("AddUser", params)
        cloud.say(f"user {user}: would be created, its key written to {key_file}")
        return NEW_UIN
    fd = _reserve(key_file)
    try:
        made = cloud.cam("AddUser", params)
    except BaseException:
        _discard(fd, key_file)
        raise
    secret_id, secret_key = made.get("SecretId"), made.get("SecretKey")
    if not secret_id or not secret_key:
        _discard(fd, key_file)
        raise Refused(f"user {user}: created, but AddUser answered no key: make one in the CAM "
                      f"console (Users → {user} → API key)")
    try:
        _write(fd, {"SecretId": secret_id, "SecretKey": secret_key})
    except OSError as e:
        _discard(None, key_file)
        raise Refused(f"user {user}: created, but its key could not be written to {key_file} "
                      f"({e.strerror or e}), and CAM cannot show it again: `python -m handler deploy "
                      "teardown-key`, then run this again") from None
    cloud.say(f"user {user}: created (UIN {made.get('Uin')}); its key is in {key_file} (mode 0600), "
              "the only copy: CAM cannot show it again")
    return made.get("Uin")


def _check_creatable(path: Path) -> None:
    if path.exists():
        raise _exists(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--key-file {path}: cannot be created (no writable directory {parent})")


def _reserve(path: Path) -> int:
    """The key file, made empty with mode 0600; never one that exists."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as e:
        raise UsageError(f"--key-file {path}: cannot be created ({e.strerror or e})") from None


def _exists(path: Path) -> UsageError:
    return UsageError(f"--key-file {path}: exists; a new key goes into a file of its own (remove it "
                      "if it holds a key no longer used, or name another)")


def _write(fd: int, key: dict[str, str]) -> None:
    data = (json.dumps(key) + "\n").encode()
    try:
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(fd: int | None, path: Path) -> None:
    if fd is not None:
        os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink()

