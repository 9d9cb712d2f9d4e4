"""The Tencent Cloud key of a function outside Tencent (AWS Lambda), read from a secret store once
per cold start and put where `handler.gateway.credentials_from_env` (and the queue client) find it.

The deployment names the secret, never its value: `AUTORETRY_TENCENT_KEY_PARAM` (an SSM
SecureString parameter) or `AUTORETRY_TENCENT_KEY_SECRET` (a Secrets Manager secret). Either holds
`{"SecretId": "AKID…", "SecretKey": "…"}`. boto3 is imported only here, only when one is set.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import MutableMapping
from typing import Any

PARAM_VAR, SECRET_VAR = "AUTORETRY_TENCENT_KEY_PARAM", "AUTORETRY_TENCENT_KEY_SECRET"
ID_VAR, KEY_VAR = "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"

_loaded = False
_lock = threading.Lock()


class SecretUnavailable(RuntimeError):
    """The named secret could not be read or is not a Tencent key; the message names the store and
    the name, never the value."""


def load_tencent_key(env: MutableMapping[str, str] | None = None, *, client: Any = None) -> bool:
    """Once per instance: read the named secret and set TENCENTCLOUD_SECRET_ID / _KEY in `env`.
    Returns True if a key was loaded now or before; False if no secret is named."""
    global _loaded
    env = os.environ if env is None else env
    param, secret = env.get(PARAM_VAR, "").strip(), env.get(SECRET_VAR, "").strip()
    if not param and not secret:
        return False
    with _lock:
        if _loaded and env.get(ID_VAR) and env.get(KEY_VAR):
            return True
        raw = _read_parameter(param, client) if param else _read_secret(secret, client)
        where = f"{PARAM_VAR}={param}" if param else f"{SECRET_VAR}={secret}"
        secret_id, secret_key = _parse(raw, where)
        env[ID_VAR], env[KEY_VAR] = secret_id, secret_key
        _loaded = True
    return True


def forget() -> None:
    """For tests: the next call reads the store again."""
    global _loaded
    _loaded = False


def _read_parameter(name: str, client: Any) -> str:
    try:
        if client is None:
            import boto3

            client = boto3.client("ssm")
        value: str = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        return value
    except Exception as e:  # boto3's errors carry no secret; keep only the kind and code
        raise SecretUnavailable(f"cannot read SSM parameter {name}: {_reason(e)}") from None


def _read_secret(secret_id: str, client: Any) -> str:
    try:
        if client is None:
            import boto3

            client = boto3.client("secretsmanager")
        value: str = client.get_secret_value(SecretId=secret_id)["SecretString"]
        return value
    except Exception as e:
        raise SecretUnavailable(f"cannot read secret {secret_id}: {_reason(e)}") from None


def _parse(raw: str, where: str) -> tuple[str, str]:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SecretUnavailable(f"{where}: expected JSON {{\"SecretId\": …, \"SecretKey\": …}}")
    secret_id, secret_key = data.get("SecretId"), data.get("SecretKey")
    if not (isinstance(secret_id, str) and isinstance(secret_key, str) and secret_id.strip()
            and secret_key.strip()):
        raise SecretUnavailable(f"{where}: SecretId and SecretKey must both be non-empty strings")
    return secret_id.strip(), secret_key.strip()


def _reason(e: Exception) -> str:
    code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
    return f"{type(e).__name__}{f' ({code})' if code else ''}"
