"""TC3-HMAC-SHA256 verification, the way the Tencent Cloud API 3.0 checks a signed request."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime

SERVICE = "batch"
MAX_SKEW_S = 300  # beyond 5 minutes the service answers AuthFailure.SignatureExpire

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)/tc3_request,"
    r"\s*SignedHeaders=(?P<headers>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


class AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signature(secret_key: str, timestamp: int, canonical_request: str, service: str = SERVICE) -> str:
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(("TC3-HMAC-SHA256", str(timestamp), scope,
                         hashlib.sha256(canonical_request.encode()).hexdigest()))
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str],
                      signed: list[str], body: bytes) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    block = "".join(f"{name}:{lower.get(name, '').strip()}\n" for name in signed)
    return "\n".join((method, path, query, block, ";".join(signed), hashlib.sha256(body).hexdigest()))


def verify(secrets: Mapping[str, str], method: str, path: str, query: str, headers: Mapping[str, str],
           body: bytes, now: float, service: str | None = None) -> str:
    """Check the Authorization header; return the SecretId on success, raise AuthError otherwise.
    With `service`, the credential scope must name it (a request signed for `batch` is no `tag` call)."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    match = _AUTH.match(auth.strip())
    if not match:
        raise AuthError("AuthFailure.InvalidAuthorization", "Authorization header is missing or malformed")
    secret_id = match["id"]
    if secret_id not in secrets:
        raise AuthError("AuthFailure.SecretIdNotFound", "the SecretId is not found")
    try:
        timestamp = int(lower.get("x-tc-timestamp", ""))
    except ValueError:
        raise AuthError("MissingParameter", "X-TC-Timestamp is required") from None
    if abs(now - timestamp) > MAX_SKEW_S:
        raise AuthError("AuthFailure.SignatureExpire",
                        f"signature expired: timestamp {timestamp} is over {MAX_SKEW_S}s from server time")
    if match["date"] != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d"):
        raise AuthError("AuthFailure.SignatureFailure", "credential date does not match X-TC-Timestamp")
    if service is not None and match["service"] != service:
        raise AuthError("AuthFailure.SignatureFailure",
                        f"the credential scope names {match['service']!r}, this is the {service!r} service")
    signed = match["headers"].split(";")
    if "host" not in signed or "content-type" not in signed:
        raise AuthError("AuthFailure.SignatureFailure", "SignedHeaders must include content-type and host")
    expected = signature(secrets[secret_id], timestamp,
                         canonical_request(method, path, query, headers, signed, body), match["service"])
    if not hmac.compare_digest(expected, match["sig"]):
        raise AuthError("AuthFailure.SignatureFailure",
                        "the provided credentials could not be validated; check your signature")
    return secret_id
