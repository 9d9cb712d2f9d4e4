"""Platform entry points: `main_handler` (Tencent SCF) and `lambda_handler` (AWS Lambda).

The only module that reads the environment and wires the parts together. Parts are built once per
instance and reused by warm invocations.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from handler.config import Config, ConfigError
from handler.gateway import RATE_LIMITS, BatchGateway
from handler.ingress import BadInput, Trigger, classify_event, http_response, read_notice
from handler.jobs import JobRef
from handler.ledger import Ledger, StoreUnavailable, describe_store, open_store
from handler.notices import Notice
from handler.observe import Observer
from handler.policy import Policy
from handler.policy.loader import PolicyError, load_policy
from handler.retrier import Deadline, Retrier, Settings

DEFAULT_TIME_LIMIT_S = 30.0
HTTP_FLUSH_BUDGET_S = 10.0  # a push not answered within ~15 s is redelivered
TIME_RESERVE_S = 1.0


@dataclass
class Runtime:
    config: Config
    ledger: Ledger
    gateway: BatchGateway
    policy: Policy
    settings: Settings

    def retrier(self, observer: Observer) -> Retrier:
        return Retrier(self.ledger, self.gateway, self.policy, settings=self.settings,
                       observer=observer)


_runtime: tuple[Config, Runtime] | None = None


def build_runtime(config: Config) -> Runtime:
    store = open_store(config.store)
    # AUTORETRY_API_SPEEDUP (emulator only) scales every pace. A claim's lease always outlasts a
    # RetryJobs call by a wide margin: the lease is what keeps a second caller out.
    speedup = max(config.api_speedup, 1.0)
    timeout_s = max(1.0, 5.0 / speedup)
    rates = {a: r * config.api_speedup for a, r in RATE_LIMITS.items()}
    settings = Settings(dry_run=config.dry_run, rates=rates, regions=config.regions,
                        lease_s=max(3 * timeout_s + 2, 60.0 / speedup),
                        recheck_s=30.0 / speedup, backoff_base_s=1.0 / speedup,
                        backoff_cap_s=60.0 / speedup)
    return Runtime(
        config=config,
        ledger=Ledger(store, retention_s=config.retention_s),
        gateway=BatchGateway(endpoint=config.batch_endpoint, protocol=config.batch_protocol,
                             timeout_s=timeout_s),
        policy=load_policy(config.policy),
        settings=settings,
    )


def runtime() -> Runtime:
    """The parts for the current environment, built on first use and kept while it is unchanged."""
    global _runtime
    config = Config.from_env()
    if _runtime is None or _runtime[0] != config:
        _runtime = (config, build_runtime(config))
    return _runtime[1]


def reset_runtime() -> None:
    global _runtime
    if _runtime is not None:
        _runtime[1].ledger.store.close()
    _runtime = None


def _deadline(context: Any, started: float) -> Deadline:
    """SCF passes a dict with `time_limit_in_ms`; Lambda an object with a remaining-time method."""
    remaining = DEFAULT_TIME_LIMIT_S
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(get_remaining):
        remaining = float(get_remaining()) / 1000.0
    elif isinstance(context, dict) and context.get("time_limit_in_ms"):
        with contextlib.suppress(TypeError, ValueError):
            remaining = float(context["time_limit_in_ms"]) / 1000.0 - (time.time() - started)
    return Deadline(started + remaining - TIME_RESERVE_S)


def _request_id(context: Any) -> str | None:
    rid = context.get("request_id") if isinstance(context, dict) else getattr(context, "aws_request_id", None)
    return str(rid) if rid else None


def main_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Tencent SCF entry point."""
    return handle(event, context)


def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """AWS Lambda entry point."""
    return handle(event, context)


def handle(event: Any, context: Any) -> dict[str, Any]:
    started = time.time()
    observer = Observer(correlation_id=_request_id(context))
    try:
        trigger = classify_event(event)
    except BadInput as e:
        observer.warning("bad input", error=str(e), status=e.status)
        return http_response(e.status, {"error": str(e)})
    if trigger.http is not None:
        observer.correlation_id = (trigger.http.header("x-cmq-message-id")
                                   or trigger.http.request_id or observer.correlation_id)
    try:
        rt = runtime()
    except (ConfigError, PolicyError, ValueError) as e:
        observer.error("configuration error", error=str(e))
        return http_response(500, {"error": f"function misconfigured: {e}"})
    except StoreUnavailable as e:
        observer.error("ledger unavailable", error=str(e))
        return http_response(503, {"error": "ledger unavailable; redeliver later"})
    deadline = _deadline(context, started)
    try:
        if trigger.kind == "timer":
            return _sweep(rt, observer, deadline)
        if trigger.kind == "http":
            return _http(rt, trigger, observer, deadline)
        return _messages(rt, trigger, observer, deadline)
    except StoreUnavailable as e:
        # Fail closed: nothing was retried, and a non-2xx makes the platform redeliver later.
        observer.error("ledger unavailable", store=describe_store(rt.config.store), error=str(e))
        observer.count("ledger.errors")
        return http_response(503, {"error": "ledger unavailable; redeliver later"})


def _authorised(rt: Runtime, trigger: Trigger) -> bool:
    assert trigger.http is not None
    token = rt.config.auth_token
    if token is None:
        return rt.config.local
    given = trigger.http.query.get("token", "")
    auth = trigger.http.header("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), token.encode())


def _http(rt: Runtime, trigger: Trigger, observer: Observer, deadline: Deadline) -> dict[str, Any]:
    req = trigger.http
    assert req is not None
    if not _authorised(rt, trigger):
        if rt.config.auth_token is None:
            observer.error("HTTP trigger refused: set AUTORETRY_AUTH_TOKEN (or AUTORETRY_LOCAL=true "
                           "for a local run)")
            return http_response(503, {"error": "endpoint not configured"})
        observer.warning("unauthorised request")
        return http_response(401, {"error": "unauthorised"})
    if req.method == "GET":
        return http_response(200, {"status": "ok"})
    if req.method != "POST":
        return http_response(405, {"error": "use POST"})
    try:
        notice, msg_id = read_notice(req.body)
    except BadInput as e:
        observer.warning("bad input", error=str(e), status=e.status)
        return http_response(e.status, {"error": str(e)})
    accepted, ignored = _accept(rt, [notice], observer)
    retried = _flush_soon(rt, observer, deadline, accepted)
    return http_response(200, {"accepted": accepted, "ignored": ignored, "retried": retried,
                               "message_id": msg_id or req.header("x-cmq-message-id")})


def _messages(rt: Runtime, trigger: Trigger, observer: Observer, deadline: Deadline
              ) -> dict[str, Any]:
    notices: list[Notice] = []
    rejected: list[str] = []
    for msg_id, body in trigger.messages:
        try:
            notices.append(read_notice(body)[0])
        except BadInput as e:
            # A broken record cannot be fixed by redelivery; the others still count.
            observer.warning("bad input", error=str(e), message_id=msg_id)
            rejected.append(f"{msg_id or '-'}: {e}")
    if not notices and rejected:
        return http_response(400, {"error": "; ".join(rejected)[:1000]})
    accepted, ignored = _accept(rt, notices, observer)
    retried = _flush_soon(rt, observer, deadline, accepted)
    return http_response(200, {"accepted": accepted, "ignored": ignored, "retried": retried,
                               "rejected": rejected})


def _accept(rt: Runtime, notices: list[Notice], observer: Observer) -> tuple[int, int]:
    """Put every job-failure event in the ledger; durable when this returns."""
    retrier = rt.retrier(observer)
    accepted = ignored = 0
    for notice in notices:
        for ev in notice.Events:
            if not ev.is_job_failure or ev.Batch.JobId is None:
                ignored += 1
                continue
            job = JobRef(ev.Region or rt.config.default_region, ev.Batch.JobId)
            retrier.enqueue(job, ev.EventName, ev.vars)
            observer.info("notice accepted", job=job.job_id, region=job.region, event=ev.EventName)
            accepted += 1
    return accepted, ignored


def _flush_soon(rt: Runtime, observer: Observer, deadline: Deadline, accepted: int) -> list[str]:
    """Group commit: unless another instance is already draining, drain what is due (ours and
    others') at the API's pace."""
    if not accepted:
        return []
    budget = Deadline(min(deadline.at, time.time() + HTTP_FLUSH_BUDGET_S))
    try:
        return rt.retrier(observer).pump(budget).retried
    except Exception as e:  # the notice is already durable; the next flush or sweep picks it up
        observer.error("flush failed", error=f"{type(e).__name__}: {e}"[:500])
        return []


def _sweep(rt: Runtime, observer: Observer, deadline: Deadline) -> dict[str, Any]:
    report = rt.retrier(observer).sweep(deadline)
    observer.info("sweep done", taken=report.taken, retried=len(report.retried),
                  stopped=report.stopped)
    return {"statusCode": 200, "taken": report.taken, "retried": report.retried,
            "stopped": report.stopped}
