"""Signatures on outgoing messages.

- DingTalk robot with "加签" (signing) on: `sign = urlencode(base64(HMAC-SHA256(secret,
  "<timestamp ms>\\n<secret>")))`, sent as `&timestamp=<ms>&sign=<sign>` on the webhook URL; the
  robot refuses a timestamp more than an hour from its clock.
- Generic webhook: the function's own scheme (the one its HTTP trigger checks, `handler.auth`):
  `X-Autoretry-Timestamp: <unix s>`, `X-Autoretry-Signature: sha256=<hex HMAC-SHA256(secret,
  "<timestamp>.<raw body>")>`. `verify_webhook` is what a receiver runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from handler.auth import sign as sign_body
from handler.auth import signed_headers

__all__ = ["dingtalk_sign", "sign_body", "signed_headers", "verify_webhook"]

WEBHOOK_WINDOW_S = 300


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query value (base64, not yet URL-encoded: the query encoder does that)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes, now: float,
                   window_s: float = WEBHOOK_WINDOW_S) -> bool:
    """True if `body` carries a valid signature made within `window_s` of `now`."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lower.get("x-autoretry-timestamp", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > window_s:
        return False
    expected = sign_body(secret, timestamp, body)
    return hmac.compare_digest(expected, lower.get("x-autoretry-signature", ""))
