"""Who may call the HTTP trigger: a shared token, or an HMAC-SHA256 signature from senders that can
sign.

- Token (`AUTORETRY_AUTH_TOKEN`): `?token=T` (a TDMQ-CMQ subscription can set only the URL) or
  `Authorization: Bearer T`. The header wins when both are present.
- Signature (`AUTORETRY_HMAC_SECRET`): `X-Autoretry-Timestamp: <unix seconds>` and
  `X-Autoretry-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`. The timestamp
  must be within ±5 minutes, and a signature is accepted once per process within that window. The
  ledger's exactly-once claim covers a replay that reaches another instance.

A refusal tells the caller nothing beyond "unauthorized"; the reason goes to the log only, and no
presented credential is ever logged. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

TIMESTAMP_HEADER = "x-autoretry-timestamp"
SIGNATURE_HEADER = "x-autoretry-signature"
SIGNATURE_PREFIX = "sha256="
REPLAY_WINDOW_S = 300
REPLAY_MEMORY = 10_000  # signatures remembered per process; more than any 5-minute burst we expect

UNAUTHORIZED = {"error": "unauthorized"}
NOT_CONFIGURED = {"error": "endpoint not configured"}


class Request(Protocol):
    body: bytes
    query: dict[str, str]

    def header(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    status: int  # 200 when allowed; 401 refused; 503 nothing configured to check against
    method: str  # "token", "hmac", "local" or "none"
    reason: str  # for the log line only, never for the response


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Autoretry-Signature` value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {"X-Autoretry-Timestamp": str(ts), "X-Autoretry-Signature": sign(secret, ts, body)}


class ReplayGuard:
    """Signatures accepted recently, oldest forgotten first. Thread-safe (`serve` is threaded)."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S, capacity: int = REPLAY_MEMORY) -> None:
        self.window_s, self.capacity = window_s, capacity
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> forget after
        self._lock = threading.Lock()

    def first_sight(self, signature: str, timestamp: int, now: float) -> bool:
        with self._lock:
            while self._seen:
                oldest, forget_at = next(iter(self._seen.items()))
                if forget_at > now and len(self._seen) < self.capacity:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                return False
            # Past timestamp + window the clock check refuses it anyway.
            self._seen[signature] = timestamp + self.window_s + 1
            return True


def _bytes(text: str) -> bytes:
    # surrogatepass: a header may hold a lone surrogate (`Bearer \ud800`), which no other error
    # handler encodes; it then simply fails to match.
    return text.encode("utf-8", "surrogatepass")


def _same(given: str, expected: str) -> bool:
    # Hash both sides first so that not even the secret's length leaks through timing.
    return hmac.compare_digest(hashlib.sha256(_bytes(given)).digest(),
                               hashlib.sha256(_bytes(expected)).digest())


def _check_signature(req: Request, secret: str, guard: ReplayGuard, now: float) -> Verdict:
    signature = (req.header(SIGNATURE_HEADER) or "").strip()
    raw_ts = (req.header(TIMESTAMP_HEADER) or "").strip()
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        return Verdict(False, 401, "hmac", "signature without a valid X-Autoretry-Timestamp")
    timestamp = int(raw_ts)
    if abs(now - timestamp) > REPLAY_WINDOW_S:
        return Verdict(False, 401, "hmac", f"timestamp outside the ±{REPLAY_WINDOW_S}s window")
    if not _same(signature.lower(), sign(secret, timestamp, req.body)):
        return Verdict(False, 401, "hmac", "signature mismatch")
    if not guard.first_sight(signature.lower(), timestamp, now):
        return Verdict(False, 401, "hmac", "signature replayed")
    return Verdict(True, 200, "hmac", "signature valid")


def _presented_token(req: Request) -> str | None:
    auth = req.header("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return req.query.get("token")


def _configured(secret: str | None) -> str | None:
    # A deployment variable that was never filled in ("${env:X}", "{{resolve:...}}") would be a
    # credential anyone can read in the deployment files: treat it as no credential at all.
    if secret is None or not secret.strip() or re.fullmatch(r"\$\{.*\}|\{\{.*\}\}", secret.strip()):
        return None
    return secret


def authenticate(req: Request, *, token: str | None, hmac_secret: str | None, local: bool,
                 guard: ReplayGuard, now: float | None = None) -> Verdict:
    """Decide whether an HTTP request may reach the function."""
    now = time.time() if now is None else now
    placeholder = (token, hmac_secret) != (_configured(token), _configured(hmac_secret))
    token, hmac_secret = _configured(token), _configured(hmac_secret)
    if token is None and hmac_secret is None:
        if local:
            return Verdict(True, 200, "local", "AUTORETRY_LOCAL=true and no credential configured")
        return Verdict(False, 503, "none",
                       "a credential is an unresolved deployment variable" if placeholder
                       else "no AUTORETRY_AUTH_TOKEN or AUTORETRY_HMAC_SECRET set")
    if req.header(SIGNATURE_HEADER) is not None:
        if hmac_secret is None:
            # A signed request to an endpoint without a secret: judge it by its token, if any.
            if token is None:
                return Verdict(False, 401, "hmac", "signed request, but no AUTORETRY_HMAC_SECRET set")
        else:
            return _check_signature(req, hmac_secret, guard, now)
    given = _presented_token(req)
    if token is None:
        return Verdict(False, 401, "none", "no signature presented")
    if not given:
        return Verdict(False, 401, "token", "no token presented")
    if not _same(given, token):
        return Verdict(False, 401, "token", "token mismatch")
    return Verdict(True, 200, "token", "token valid")
