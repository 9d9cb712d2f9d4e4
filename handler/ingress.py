"""Unwrapping every trigger shape into notices, authenticating HTTP callers, and answering.

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
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from handler import auth
from handler.notices import (
    Event,
    Notice,
    NoticeError,
    new_shape,
    parse_envelope,
    parse_notice,
    redacted_sample,
)
from handler.observe import Observer

if TYPE_CHECKING:
    from handler.config import Config
    from handler.pull import QueueSource
    from handler.retrier import Deadline, FlushReport, Retrier

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


def is_pull_tick(event: object) -> bool:
    """A timer tick that should pull the queue: SCF's timer trigger with the argument `pull`
    (`Message`), or the EventBridge schedule serverless.yml marks with `detail.autoretry: pull`."""
    if not isinstance(event, dict):
        return False
    if event.get("Type") == "Timer":
        return str(event.get("Message", "")).strip() == "pull"
    detail = event.get("detail")
    return event.get("detail-type") == "Scheduled Event" and isinstance(detail, dict) and \
        detail.get("autoretry") == "pull"


def classify_event(event: Any) -> Trigger:
    """Recognise the shape of a platform event."""
    if not isinstance(event, dict):
        raise BadInput("the event is not a JSON object")
    rc = event.get("requestContext")
    if isinstance(rc, dict) and isinstance(rc.get("http"), dict):  # AWS HTTP API v2 / Function URL
        return Trigger("http", HttpRequest(
            str(rc["http"].get("method", "")).upper(), str(event.get("rawPath") or "/"),
            _lower(event.get("headers")), _query(event, "queryStringParameters"),
            _body_bytes(event), _text(rc.get("requestId"))))
    if "httpMethod" in event and ("requestContext" in event or "headers" in event):
        # SCF API Gateway sends queryString; AWS REST v1 sends queryStringParameters.
        request_id = rc.get("requestId") if isinstance(rc, dict) else None
        return Trigger("http", HttpRequest(
            str(event.get("httpMethod", "")).upper(), str(event.get("path") or "/"),
            _lower(event.get("headers")), _query(event, "queryString", "queryStringParameters"),
            _body_bytes(event), _text(request_id)))
    records = event.get("Records")
    if isinstance(records, list) and records and all(
        isinstance(r, dict) and isinstance(r.get("CMQ"), dict) for r in records
    ):
        msgs = [(r["CMQ"].get("msgId"), r["CMQ"].get("msgBody")) for r in records]
        if any(not isinstance(body, str) for _, body in msgs):
            raise BadInput("Records[].CMQ.msgBody must be a string")
        return Trigger("cmq", messages=[(_text(i), str(b)) for i, b in msgs])
    if event.get("autoretry") == "continue":  # handler.continuation: drain where nobody waits
        return Trigger("continue")
    if is_pull_tick(event):
        return Trigger("pull")
    if event.get("Type") == "Timer" or event.get("detail-type") == "Scheduled Event" or (
        event.get("source") == "aws.events"
    ):
        return Trigger("timer")
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
    except (ValueError, RecursionError):
        # ValueError, not only JSONDecodeError: a number past Python's 4,300-digit conversion
        # limit raises the plain kind.
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
    try:
        if "msgBody" in data and "Events" not in data:
            env = parse_envelope(data)
            msg_id = env.msgId
            inner = _json(env.msgBody)
            if inner is _NOT_JSON:
                decoded = _unbase64(env.msgBody)
                inner = _json(decoded) if decoded is not None else _NOT_JSON
            if inner is _NOT_JSON or not isinstance(inner, dict):
                raise BadInput("msgBody is not a Batch notice (neither JSON nor base64 of JSON)")
            data = inner
        return parse_notice(data), msg_id
    except NoticeError as e:
        raise BadInput(str(e)) from None


@dataclass(frozen=True)
class Answer:
    """What the function answers: a status and a JSON body."""

    status: int
    body: dict[str, Any]
    more_due: bool = False  # the flush ran out of time with work still due: continue elsewhere

    def as_platform(self) -> dict[str, Any]:
        """SCF's API Gateway integration response and AWS's proxy response (REST v1, HTTP API v2,
        Function URL) are the same four fields; a queue or timer invocation only logs it."""
        return {
            "isBase64Encoded": False,
            "statusCode": self.status,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(self.body),
        }


ROUTES = ("/events",)


def route(path: str) -> str:
    """The route a request was for, as logs may show it. Never the raw path: a caller may put its
    token there (`/events;token=...`, `/events%3Ftoken=...`)."""
    for known in ROUTES:
        if path == known or path.startswith((known + "/", known + ";", known + "%", known + "?")):
            return known
    return "/"


def refuse(observer: Observer, e: BadInput) -> Answer:
    observer.warning("bad input", error=str(e), status=e.status)
    observer.count("input.rejected")
    return Answer(e.status, {"error": str(e)})


def authenticate(req: HttpRequest, config: Config, guard: auth.ReplayGuard, observer: Observer
                 ) -> Answer | None:
    """The refusal for a caller that may not reach the function; None when it may."""
    verdict = auth.authenticate(req, token=config.auth_token, hmac_secret=config.auth_hmac_secret,
                                local=config.local, guard=guard)
    if verdict.allowed:
        return None
    if verdict.status == 503:
        observer.error("HTTP trigger refused: set AUTORETRY_AUTH_TOKEN or AUTORETRY_HMAC_SECRET "
                       "(or AUTORETRY_LOCAL=true for a local run)", reason=verdict.reason)
        return Answer(503, auth.NOT_CONFIGURED)
    observer.warning("unauthorized request", method=verdict.method, reason=verdict.reason,
                     route=route(req.path))
    observer.count("auth.refused")
    return Answer(verdict.status, auth.UNAUTHORIZED)


def respond(trigger: Trigger, retrier: Retrier, observer: Observer, deadline: Deadline,
            flush_by: Deadline, regions: tuple[str, ...], queue: QueueSource | None = None
            ) -> Answer:
    """Handle an authenticated trigger: a timer sweeps until `deadline`; a pull tick pulls the
    `queue` into the ledger, then drains; notices are put in the ledger, then flushed until
    `flush_by`. `regions[0]` stands for a notice that names none."""
    if trigger.kind == "pull" and queue is not None:
        return _pull(queue, retrier, observer, deadline, regions)
    if trigger.kind == "pull":
        observer.warning("a pull tick, but no queue to pull (set AUTORETRY_QUEUE): sweeping instead")
    if trigger.kind == "continue":
        report = retrier.pump(deadline)
        retrier.deliver_notices(deadline)
        observer.info("continuation done", taken=report.taken, retried=len(report.retried),
                      stopped=report.stopped)
        return Answer(200, {"retried": report.retried, "stopped": report.stopped},
                      more_due=_worth_continuing(report, chained=True))
    if trigger.kind in ("timer", "pull"):
        report = retrier.sweep(deadline)
        observer.info("sweep done", taken=report.taken, retried=len(report.retried),
                      stopped=report.stopped)
        return Answer(200, {"taken": report.taken, "retried": report.retried,
                            "stopped": report.stopped})
    if trigger.http is not None:
        return _http(trigger.http, retrier, observer, flush_by, regions)
    return _messages(trigger.messages, retrier, observer, flush_by, regions)


@dataclass
class _Tally:
    accepted: int = 0
    ignored: int = 0
    # The notices, by position, that named a region this function does not serve, with those regions.
    foreign_at: dict[int, set[str]] = field(default_factory=dict)

    @property
    def foreign(self) -> set[str]:
        """Every region named that this function does not serve."""
        return set[str]().union(*self.foreign_at.values())

    def answer(self, more_due: bool = False, **more: Any) -> Answer:
        if self.foreign:
            # Refused, not ignored: if AUTORETRY_REGION lacks a region by mistake, the topic's
            # redeliveries keep the notice alive until it is fixed. Events of the same notice for
            # a served region are in the ledger already; their redeliveries are absorbed.
            return Answer(403, {"error": f"region {', '.join(sorted(self.foreign))[:200]} is not in "
                                         "AUTORETRY_REGION", "accepted": self.accepted,
                                "ignored": self.ignored}, more_due)
        return Answer(200, {"accepted": self.accepted, "ignored": self.ignored, **more}, more_due)


def _http(req: HttpRequest, retrier: Retrier, observer: Observer, flush_by: Deadline,
          regions: tuple[str, ...]) -> Answer:
    if req.method == "GET":
        return Answer(200, {"status": "ok"})
    if req.method != "POST":
        return Answer(405, {"error": "use POST"})
    try:
        notice, msg_id = read_notice(req.body)
    except BadInput as e:
        return refuse(observer, e)
    if msg_id and not req.header("x-cmq-message-id"):
        observer.correlation_id = msg_id
    tally = accept_notices(retrier, [(msg_id, notice)], observer, regions)
    retried, more_due = _flush_soon(retrier, observer, flush_by, tally.accepted)
    return tally.answer(more_due, retried=retried,
                        message_id=msg_id or req.header("x-cmq-message-id"))


def _messages(messages: list[tuple[str | None, str]], retrier: Retrier, observer: Observer,
              flush_by: Deadline, regions: tuple[str, ...]) -> Answer:
    notices: list[tuple[str | None, Notice]] = []
    rejected: list[str] = []
    for msg_id, body in messages:
        try:
            notice, envelope_id = read_notice(body)
        except BadInput as e:
            # A broken record cannot be fixed by redelivery; the others still count.
            observer.warning("bad input", error=str(e), message_id=msg_id)
            observer.count("input.rejected")
            rejected.append(f"{msg_id or '-'}: {e}")
            continue
        notices.append((msg_id or envelope_id, notice))
    if len(messages) == 1 and notices and notices[0][0]:
        observer.correlation_id = notices[0][0]
    if not notices and rejected:
        return Answer(400, {"error": "; ".join(rejected)[:1000]})
    tally = accept_notices(retrier, notices, observer, regions)
    retried, more_due = _flush_soon(retrier, observer, flush_by, tally.accepted)
    answer = tally.answer(more_due, retried=retried, rejected=rejected)
    if answer.status == 403:
        # Not over HTTP: the platform redelivers only an invocation that failed (a 5xx here),
        # so that is how a notice for a region not served yet is kept, as the push path keeps it.
        return Answer(503, answer.body, answer.more_due)
    return answer


# Shapes of notice already shown in this instance's log (bounded: a sender inventing shapes
# cannot fill the log or the memory).
_shapes_shown: set[str] = set()
MAX_SHAPES_SHOWN = 100


def _show_new_shape(notice: Notice, observer: Observer) -> None:
    if len(_shapes_shown) >= MAX_SHAPES_SHOWN:
        return
    shape = new_shape(notice)
    if shape is None or shape in _shapes_shown:
        return
    _shapes_shown.add(shape)
    # The sample is built only for a shape this instance has not shown yet.
    observer.info("notice of an undocumented shape (values removed; please send this line to the "
                  "maintainers)", shape=shape, sample=redacted_sample(notice))


def accept_notices(retrier: Retrier, notices: list[tuple[str | None, Notice]], observer: Observer,
            regions: tuple[str, ...]) -> _Tally:
    """Put every job-failure event for a served region in the ledger; durable when this returns."""
    from handler.jobs import JobRef

    tally = _Tally()
    for position, (msg_id, notice) in enumerate(notices):
        _show_new_shape(notice, observer)
        for ev in notice.Events:
            if not ev.is_job_failure or ev.Batch.JobId is None:
                tally.ignored += 1
                observer.count("events.ignored")
                observer.info("event not acted on", event=ev.EventName[:64],
                              documented=ev.is_known, message_id=msg_id)
                continue
            region = ev.Region or regions[0]
            if region not in regions:
                tally.foreign_at.setdefault(position, set()).add(region)
                observer.count("events.foreign_region")
                observer.warning("notice for a region not in AUTORETRY_REGION refused",
                                 region=region, job=ev.Batch.JobId, message_id=msg_id)
                continue
            job = JobRef(region, ev.Batch.JobId)
            retrier.enqueue(job, ev.EventName, ev.vars, _said(ev))
            observer.info("notice accepted", job=job.job_id, region=job.region, event=ev.EventName,
                          message_id=msg_id)
            tally.accepted += 1
    return tally


def _said(ev: Event) -> tuple[str, float | None] | None:
    """The failure's StateReason as the notice gives it (undocumented: it may not), with the
    EndTime of the failure it names (None if none is given, or none that reads as a time). The
    policy may only SKIP on it (a termination); it never makes a retry."""
    from handler.jobs import iso_epoch

    reason = ev.Batch.extra.get("StateReason")
    if not isinstance(reason, str) or not reason.strip():
        return None
    end = ev.Batch.extra.get("EndTime")
    try:
        at = iso_epoch(str(end)) if isinstance(end, (str, int, float)) and \
            not isinstance(end, bool) else None
    except ValueError:
        at = None
    return reason.strip()[:500], at


def _flush_soon(retrier: Retrier, observer: Observer, flush_by: Deadline, accepted: int
                ) -> tuple[list[str], bool]:
    """Group commit: unless another invocation is already draining, drain what is due (ours and
    others') at the API's pace until `flush_by`. Returns what was retried, and whether work is
    still due when the time ran out."""
    if not accepted:
        return [], False
    try:
        report = retrier.pump(flush_by)
    except Exception as e:  # the notice is already durable; the next flush or sweep picks it up
        from handler.ledger.identity import LedgerForgot

        if isinstance(e, LedgerForgot):
            raise  # answered 503: the ledger is not the one this deployment trusts
        observer.error("flush failed", error=f"{type(e).__name__}: {e}"[:500])
        return [], False
    return report.retried, _worth_continuing(report)


def _worth_continuing(report: FlushReport, chained: bool = False) -> bool:
    """Out of time, and either making progress (a burst, which a continuation drains now) or
    leaving work no drainer has tried (notices that came while it drained). A continuation that
    retried nothing starts no other, and work whose calls failed (a backoff, no credentials) waits
    for the timer, instead of chaining invocations that each run to their limit."""
    return report.stopped == "time" and (bool(report.retried) or (report.left_due and not chained))


def _pull(queue: QueueSource, retrier: Retrier, observer: Observer, deadline: Deadline,
          regions: tuple[str, ...]) -> Answer:
    from handler.pull import tick

    report, drained = tick(queue, retrier, observer, deadline, regions)
    if report.stopped == "ledger error":
        return Answer(503, {"error": "ledger unavailable; the queue keeps the messages"})
    retrier.deliver_notices(deadline)
    observer.info("pull done", received=report.received, accepted=report.accepted,
                  deleted=report.deleted, poison=report.poison, foreign=report.foreign,
                  retried=len(drained.retried), stopped=drained.stopped)
    return Answer(200, {"received": report.received, "accepted": report.accepted,
                        "deleted": report.deleted, "poison": report.poison,
                        "foreign": report.foreign, "retried": drained.retried,
                        "stopped": report.stopped})
