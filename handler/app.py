"""Platform entry points: `main_handler` (Tencent SCF) and `lambda_handler` (AWS Lambda).

The only module that reads the environment and wires the parts together. Parts are built once per
instance and reused by warm invocations.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from handler import auth
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
# The invocation that wins the drainer lease keeps draining for the whole fleet until the queue is
# empty or this budget ends. Its own push may time out at the topic and be redelivered meanwhile
# (a duplicate the ledger absorbs); what matters is that a burst's tail is retried now, not at the
# next timer. The function's timeout bounds it further (serverless.yml sets 60 s).
HTTP_FLUSH_BUDGET_S = 55.0
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
_replay_guard = auth.ReplayGuard()


class RedeliverLater(RuntimeError):
    """Raised instead of answering 5xx to a queue, timer or direct invocation: those platforms
    redeliver only when the function fails, never because of a status code in the answer."""


def build_runtime(config: Config) -> Runtime:
    store = open_store(config.store)
    # AUTORETRY_API_SPEEDUP (emulator only) scales every pace. A claim's lease always outlasts a
    # RetryJobs call by a wide margin: the lease is what keeps a second caller out.
    speedup = max(config.api_speedup, 1.0)
    timeout_s = max(1.0, 5.0 / speedup)
    rates = {a: r * config.api_speedup for a, r in RATE_LIMITS.items()}
    settings = Settings(dry_run=config.dry_run, rates=rates, window_s=1.0 / config.api_speedup,
                        regions=config.regions,
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


def runtime(config: Config | None = None) -> Runtime:
    """The parts for the current environment, built on first use and kept while it is unchanged."""
    global _runtime
    config = Config.from_env() if config is None else config
    if _runtime is None or _runtime[0] != config:
        _runtime = (config, build_runtime(config))
    return _runtime[1]


def reset_runtime() -> None:
    global _runtime
    if _runtime is not None:
        _runtime[1].ledger.store.close()
    _runtime = None


def _deadline(context: Any, started: float) -> Deadline:
    """SCF passes a dict with `time_limit_in_ms` (the whole invocation's limit, counted from its
    start); Lambda an object whose `get_remaining_time_in_millis()` counts from now."""
    end = started + DEFAULT_TIME_LIMIT_S
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(get_remaining):
        end = time.time() + float(get_remaining()) / 1000.0
    elif isinstance(context, dict) and context.get("time_limit_in_ms"):
        with contextlib.suppress(TypeError, ValueError):
            end = started + float(context["time_limit_in_ms"]) / 1000.0
    return Deadline(end - TIME_RESERVE_S)


def _request_id(context: Any) -> str | None:
    rid = context.get("request_id") if isinstance(context, dict) else getattr(context, "aws_request_id", None)
    return str(rid) if rid else None


def main_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Tencent SCF entry point."""
    return handle(event, context, platform="scf")


def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """AWS Lambda entry point."""
    return handle(event, context, platform="aws")


def handle(event: Any, context: Any, platform: str = "scf") -> dict[str, Any]:
    started = time.time()
    observer = Observer(correlation_id=_request_id(context) or uuid.uuid4().hex, platform=platform)
    try:
        return _handle(event, context, observer, started)
    finally:
        observer.flush_metrics()


def _handle(event: Any, context: Any, observer: Observer, started: float) -> dict[str, Any]:
    try:
        trigger = classify_event(event)
    except BadInput as e:
        return _refuse(observer, e)
    if trigger.http is not None:
        observer.correlation_id = (trigger.http.header("x-cmq-message-id")
                                   or trigger.http.request_id or observer.correlation_id)
    answer = _dispatch(trigger, context, observer, started)
    if trigger.kind != "http" and answer["statusCode"] >= 500:
        # Nothing was recorded; failing the invocation is what makes SCF and Lambda try again.
        raise RedeliverLater(json.loads(answer["body"]).get("error", "redeliver later"))
    return answer


def _dispatch(trigger: Trigger, context: Any, observer: Observer, started: float) -> dict[str, Any]:
    try:
        config = Config.from_env()
    except ConfigError as e:
        observer.error("configuration error", error=str(e))
        return http_response(500, {"error": f"function misconfigured: {e}"})
    if trigger.http is not None:
        verdict = _authenticate(config, trigger, observer)
        if not verdict.allowed:
            return http_response(verdict.status, auth.NOT_CONFIGURED if verdict.status == 503
                                 else auth.UNAUTHORIZED)
    try:
        rt = runtime(config)
    except (ConfigError, PolicyError, ValueError) as e:
        observer.error("configuration error", error=str(e))
        return http_response(500, {"error": f"function misconfigured: {e}"})
    except StoreUnavailable as e:
        observer.error("ledger unavailable", store=describe_store(config.store), error=str(e))
        observer.count("ledger.errors")
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


def _refuse(observer: Observer, e: BadInput) -> dict[str, Any]:
    observer.warning("bad input", error=str(e), status=e.status)
    observer.count("input.rejected")
    return http_response(e.status, {"error": str(e)})


def _authenticate(config: Config, trigger: Trigger, observer: Observer) -> auth.Verdict:
    assert trigger.http is not None
    verdict = auth.authenticate(trigger.http, token=config.auth_token,
                                hmac_secret=config.auth_hmac_secret, local=config.local,
                                guard=_replay_guard)
    if verdict.status == 503:
        observer.error("HTTP trigger refused: set AUTORETRY_AUTH_TOKEN or AUTORETRY_HMAC_SECRET "
                       "(or AUTORETRY_LOCAL=true for a local run)", reason=verdict.reason)
    elif not verdict.allowed:
        observer.warning("unauthorized request", method=verdict.method, reason=verdict.reason,
                         path=trigger.http.path)
        observer.count("auth.refused")
    return verdict


def _http(rt: Runtime, trigger: Trigger, observer: Observer, deadline: Deadline) -> dict[str, Any]:
    req = trigger.http
    assert req is not None
    if req.method == "GET":
        return http_response(200, {"status": "ok"})
    if req.method != "POST":
        return http_response(405, {"error": "use POST"})
    try:
        notice, msg_id = read_notice(req.body)
    except BadInput as e:
        return _refuse(observer, e)
    if msg_id and not req.header("x-cmq-message-id"):
        observer.correlation_id = msg_id
    accepted, ignored = _accept(rt, [(msg_id, notice)], observer)
    retried = _flush_soon(rt, observer, deadline, accepted)
    return http_response(200, {"accepted": accepted, "ignored": ignored, "retried": retried,
                               "message_id": msg_id or req.header("x-cmq-message-id")})


def _messages(rt: Runtime, trigger: Trigger, observer: Observer, deadline: Deadline
              ) -> dict[str, Any]:
    notices: list[tuple[str | None, Notice]] = []
    rejected: list[str] = []
    for msg_id, body in trigger.messages:
        try:
            notice, envelope_id = read_notice(body)
        except BadInput as e:
            # A broken record cannot be fixed by redelivery; the others still count.
            observer.warning("bad input", error=str(e), message_id=msg_id)
            observer.count("input.rejected")
            rejected.append(f"{msg_id or '-'}: {e}")
            continue
        notices.append((msg_id or envelope_id, notice))
    if len(trigger.messages) == 1 and notices and notices[0][0]:
        observer.correlation_id = notices[0][0]
    if not notices and rejected:
        return http_response(400, {"error": "; ".join(rejected)[:1000]})
    accepted, ignored = _accept(rt, notices, observer)
    retried = _flush_soon(rt, observer, deadline, accepted)
    return http_response(200, {"accepted": accepted, "ignored": ignored, "retried": retried,
                               "rejected": rejected})


def _accept(rt: Runtime, notices: list[tuple[str | None, Notice]], observer: Observer
            ) -> tuple[int, int]:
    """Put every job-failure event in the ledger; durable when this returns."""
    retrier = rt.retrier(observer)
    accepted = ignored = 0
    for msg_id, notice in notices:
        for ev in notice.Events:
            if not ev.is_job_failure or ev.Batch.JobId is None:
                ignored += 1
                continue
            job = JobRef(ev.Region or rt.config.default_region, ev.Batch.JobId)
            retrier.enqueue(job, ev.EventName, ev.vars)
            observer.info("notice accepted", job=job.job_id, region=job.region, event=ev.EventName,
                          message_id=msg_id)
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
    return http_response(200, {"taken": report.taken, "retried": report.retried,
                               "stopped": report.stopped})
