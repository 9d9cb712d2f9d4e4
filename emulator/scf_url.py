"""A function URL on the emulator's own server: `http://HOST:PORT/scf-url/<id>/<path>` is
`https://<appid>-<id>.<region>.tencentscf.com/<path>`.

The request becomes the function URL event (doc 583/69491): {"httpMethod", "path", "headers"
(lower-case names, with `x-scf-remote-addr`), "body" (text, or base64 with "isBase64Encoded": true
when it is not UTF-8), "isBase64Encoded", "queryString" (each name's last value)}. The function's
answer {"statusCode", "headers", "body", "isBase64Encoded"} becomes the HTTP answer; an answer of
another shape is sent as a 200 JSON body. What Tencent answers when the function fails or times out
is not documented: the emulator answers 502 with {"errorMessage": ...}.
"""

from __future__ import annotations

import base64
import binascii
import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from emulator.scf import URL_PATH
from emulator.serving import send

if TYPE_CHECKING:
    from emulator.scf import Scf

MAX_REQUEST = 6 << 20  # a synchronous invocation's event: 6 MB


def serve(handler: BaseHTTPRequestHandler, scf: Scf, method: str) -> None:
    """Answer `handler`'s request (its path starts with URL_PATH) by running the function."""
    parts = urlsplit(handler.path)
    url_id, _, rest = parts.path[len(URL_PATH):].partition("/")
    length = int(handler.headers.get("Content-Length") or 0)
    if length > MAX_REQUEST:
        handler.close_connection = True
        _json(handler, 413, {"errorMessage": "the request is over 6 MB"})
        return
    body = handler.rfile.read(length) if length else b""
    target = scf.url_target(url_id)
    if target is None:
        _json(handler, 404, {"errorMessage": f"no function URL {url_id}"})
        return
    spec, trigger = target
    if trigger.http_desc.get("AuthType") == "CAM":
        _json(handler, 403, {"errorMessage": "this function URL takes CAM-signed requests, which the "
                                             "emulator does not check; create it with AuthType NONE"})
        return
    inv = scf.runtime.run(spec, _event(handler, method, "/" + rest, parts.query, body), f"url:{url_id}")
    if not inv.ok:
        _json(handler, 502, {"errorMessage": inv.error, "requestId": inv.request_id})
        return
    status, headers, raw = _answer(inv.answer)
    send(handler, status, headers, raw)


def _event(handler: BaseHTTPRequestHandler, method: str, path: str, query: str,
           body: bytes) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in handler.headers.items()}
    headers["x-scf-remote-addr"] = handler.client_address[0]
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {"httpMethod": method, "path": path, "headers": headers, "body": text,
            "isBase64Encoded": encoded, "queryString": dict(parse_qsl(query, keep_blank_values=True))}


def _answer(answer: Any) -> tuple[int, dict[str, str], bytes]:
    if not (isinstance(answer, dict) and isinstance(answer.get("statusCode"), int)):
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()
               if str(k).lower() != "content-length"}
    body = answer.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raw = json.dumps(body).encode()
    elif answer.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body)
        except (binascii.Error, ValueError):
            return 502, {"Content-Type": "application/json"}, json.dumps(
                {"errorMessage": "the answer's body is marked base64 but is not"}).encode()
    else:
        raw = body.encode()
    return int(answer["statusCode"]), headers, raw


def _json(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    send(handler, status, {"Content-Type": "application/json"}, json.dumps(payload).encode())
