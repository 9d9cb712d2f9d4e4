"""Unwrapping every trigger shape into notices, and answering in each platform's shape.

Shapes: SCF API Gateway (integration request), AWS HTTP API v2 / Function URL, AWS REST API v1,
legacy SCF CMQ trigger (`Records[].CMQ`), SCF timer and AWS scheduled events, and a raw notice or
push envelope invoked directly. An HTTP body is a TDMQ-CMQ push envelope (JSON format, the notice in
`msgBody`, maybe base64), a SIMPLIFIED raw notice, or base64 of either.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from handler.notices import KNOWN_EVENTS, Notice, PushEnvelope

MAX_BODY_BYTES = 1024 * 1024  # a TDMQ-CMQ message is at most 1024 KB
MAX_JSON_DEPTH = 32


class BadInput(Exception):
    """Input a redelivery cannot fix: answered 4xx with this message, nothing recorded."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    query: dict[str, str]
    body: bytes
    request_id: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Trigger:
    """What one invocation carries: an HTTP request, queue messages, a timer tick, or a notice."""

    kind: str  # "http" | "cmq" | "timer" | "direct"
    http: HttpRequest | None = None
    messages: list[tuple[str | None, str]] = field(default_factory=list)  # (message id, body)
    platform: str = "scf"  # which response shape the caller expects: "scf" | "aws"


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _lower(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items() if v is not None}


def _too_large() -> BadInput:
    return BadInput(f"body larger than {MAX_BODY_BYTES} bytes", 413)


def _body_bytes(event: dict[str, Any]) -> bytes:
    """The raw request body, refused with 413 before anything decodes or parses it."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        body = json.dumps(body)  # some test consoles send the body already parsed
    if event.get("isBase64Encoded"):
        if len(body) > MAX_BODY_BYTES * 4 // 3 + 4:
            raise _too_large()
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput("body is marked base64 but is not valid base64") from None
    else:
        if len(body) > MAX_BODY_BYTES:  # every character is at least one byte
            raise _too_large()
        raw = _encode(body)
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    return raw


def _encode(text: str) -> bytes:
    # The bytes the sender signed. `serve` decodes non-UTF-8 bytes with surrogateescape, which
    # only the same handler turns back into the original bytes; a JSON \ud800 escape needs
    # surrogatepass. Either way the notice parser later refuses what is not UTF-8.
    for errors in ("strict", "surrogateescape", "surrogatepass"):
        try:
            return text.encode("utf-8", errors)
        except UnicodeEncodeError:
            continue
    return text.encode("utf-8", "replace")


def _query(event: dict[str, Any], *names: str) -> dict[str, str]:
    for name in names:
        query = event.get(name)
        if isinstance(query, dict) and query:
            return {str(k): str(v) for k, v in query.items() if v is not None}
    raw = event.get("rawQueryString")  # HTTP API v2 and Function URLs
    if isinstance(raw, str) and raw:
        return dict(parse_qsl(raw, keep_blank_values=True))
    return {}


def classify_event(event: Any) -> Trigger:
    """Recognise the shape of a platform event."""
    if not isinstance(event, dict):
        raise BadInput("the event is not a JSON object")
    rc = event.get("requestContext")
    if isinstance(rc, dict) and isinstance(rc.get("http"), dict):  # AWS HTTP API v2 / Function URL
        return Trigger("http", HttpRequest(
            str(rc["http"].get("method", "")).upper(), str(event.get("rawPath") or "/"),
            _lower(event.get("headers")), _query(event, "queryStringParameters"),
            _body_bytes(event), _text(rc.get("requestId"))), platform="aws")
    if "httpMethod" in event and ("requestContext" in event or "headers" in event):
        # SCF API Gateway sends queryString; AWS REST v1 sends queryStringParameters.
        platform = "scf" if "queryString" in event or "headerParameters" in event else "aws"
        request_id = rc.get("requestId") if isinstance(rc, dict) else None
        return Trigger("http", HttpRequest(
            str(event.get("httpMethod", "")).upper(), str(event.get("path") or "/"),
            _lower(event.get("headers")), _query(event, "queryString", "queryStringParameters"),
            _body_bytes(event), _text(request_id)), platform=platform)
    records = event.get("Records")
    if isinstance(records, list) and records and all(
        isinstance(r, dict) and isinstance(r.get("CMQ"), dict) for r in records
    ):
        msgs = [(r["CMQ"].get("msgId"), r["CMQ"].get("msgBody")) for r in records]
        if any(not isinstance(body, str) for _, body in msgs):
            raise BadInput("Records[].CMQ.msgBody must be a string")
        return Trigger("cmq", messages=[(_text(i), str(b)) for i, b in msgs])
    if event.get("Type") == "Timer" or event.get("detail-type") == "Scheduled Event" or (
        event.get("source") == "aws.events"
    ):
        return Trigger("timer", platform="aws" if "detail-type" in event else "scf")
    if "Events" in event or "msgBody" in event:
        return Trigger("direct", messages=[(_text(event.get("msgId")), json.dumps(event))])
    raise BadInput("unrecognised event: expected an HTTP trigger, Records[].CMQ, a timer, or a "
                   "notice {\"Events\": [...]}")


def _depth_ok(text: str) -> bool:
    # A cheap bound before json.loads: deeply nested input is never a Batch notice.
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _json(text: str) -> Any:
    if not _depth_ok(text):
        raise BadInput(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _NOT_JSON


_NOT_JSON = object()


def _unbase64(text: str) -> str | None:
    compact = "".join(text.split())
    if not compact or len(compact) % 4:
        return None
    try:
        return base64.b64decode(compact, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def read_notice(body: str | bytes) -> tuple[Notice, str | None]:
    """The notice in a push body, and the envelope's message id if there was one."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("body is not UTF-8 text") from None
    else:
        if len(body) > MAX_BODY_BYTES and len(_encode(body)) > MAX_BODY_BYTES:
            raise _too_large()
        text = body
    if not text.strip():
        raise BadInput("empty body: expected a Batch notice or a TDMQ-CMQ push envelope")
    data = _json(text)
    if data is _NOT_JSON:
        decoded = _unbase64(text)
        data = _json(decoded) if decoded is not None else _NOT_JSON
    if data is _NOT_JSON:
        raise BadInput("body is neither JSON nor base64 of JSON")
    if not isinstance(data, dict):
        raise BadInput("body must be a JSON object")
    msg_id = None
    if "msgBody" in data and "Events" not in data:
        try:
            env = PushEnvelope.model_validate(data)
        except ValidationError as e:
            raise BadInput(f"push envelope: {_first_error(e)}") from None
        msg_id = env.msgId
        inner = _json(env.msgBody)
        if inner is _NOT_JSON:
            decoded = _unbase64(env.msgBody)
            inner = _json(decoded) if decoded is not None else _NOT_JSON
        if inner is _NOT_JSON or not isinstance(inner, dict):
            raise BadInput("msgBody is not a Batch notice (neither JSON nor base64 of JSON)")
        data = inner
    if "Events" not in data:
        raise BadInput("not a Batch notice: no Events")
    try:
        notice = Notice.model_validate(data)
    except ValidationError as e:
        raise BadInput(f"notice: {_first_error(e)}") from None
    unknown = sorted({ev.EventName for ev in notice.Events} - KNOWN_EVENTS)
    if unknown:
        raise BadInput(f"unknown event name(s) {', '.join(unknown)[:200]}; Batch documents "
                       "JOB_*, TASK_*, TASK_INSTANCE_* and COMPUTE_* events")
    for i, ev in enumerate(notice.Events):
        if ev.is_job_failure and not ev.Batch.JobId:
            raise BadInput(f"Events[{i}].Batch.JobId is required for {ev.EventName}")
    return notice, msg_id


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{where}: {err['msg']}"[:300]


def http_response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """Every answer has this shape: SCF's API Gateway integration response and AWS's proxy response
    (REST v1, HTTP API v2, Function URL) are the same four fields, and a queue or timer invocation
    only logs it."""
    return {
        "isBase64Encoded": False,
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
