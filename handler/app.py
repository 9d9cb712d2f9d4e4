"""Platform entry points: `main_handler` (Tencent SCF) and `lambda_handler` (AWS Lambda).

The only module that reads the environment and wires the parts together. Parts are built once per
instance and reused by warm invocations. What the parts are is decided here; what a delivery means
is ingress's business.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handler import auth
from handler.config import Config, ConfigError
from handler.ingress import Answer, BadInput, Trigger, authenticate, classify_event, refuse, respond
from handler.observe import Observer

if TYPE_CHECKING:
    from handler.gateway import BatchGateway
    from handler.ledger import Ledger
    from handler.policy import Policy
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
        from handler.retrier import Retrier

        return Retrier(self.ledger, self.gateway, self.policy, settings=self.settings,
                       observer=observer)

    def close(self) -> None:
        self.ledger.store.close()


_runtime: tuple[Config, Runtime] | None = None
_replay_guard = auth.ReplayGuard()


class RedeliverLater(RuntimeError):
    """Raised instead of answering 5xx to a queue, timer or direct invocation: those platforms
    redeliver only when the function fails, never because of a status code in the answer."""


def _load_policy(spec: str | None) -> Policy:
    # The YAML loader and the rule models cost more than the rest of a cold start together: only a
    # policy file pays for them.
    if spec and spec.strip():
        from handler.policy.loader import load_policy

        return load_policy(spec)
    from handler.policy import DefaultPolicy

    return DefaultPolicy()


def build_runtime(config: Config, gateway: BatchGateway | None = None) -> Runtime:
    """The parts for `config`; `gateway` replaces the Batch API client (tests, benches)."""
    from handler.gateway import RATE_LIMITS, BatchGateway
    from handler.ledger import Ledger, open_store
    from handler.retrier import Settings

    policy = _load_policy(config.policy)  # before the store: a bad policy leaves nothing open
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
        gateway=gateway or BatchGateway(endpoint=config.batch_endpoint,
                                        protocol=config.batch_protocol, timeout_s=timeout_s),
        policy=policy,
        settings=settings,
    )


def runtime(config: Config | None = None) -> Runtime:
    """The parts for the current environment, built on first use and kept while it is unchanged.
    A setting that cannot be used raises `ConfigError`; a store that cannot be reached,
    `StoreUnavailable`."""
    global _runtime
    config = Config.from_env() if config is None else config
    if _runtime is None or _runtime[0] != config:
        try:
            built = build_runtime(config)
        except ConfigError:
            raise
        except ValueError as e:  # a policy file or a store URL that cannot be used
            raise ConfigError(str(e)) from None
        reset_runtime()  # the old configuration's store is closed, not leaked
        _runtime = (config, built)
    return _runtime[1]


def reset_runtime() -> None:
    global _runtime
    if _runtime is not None:
        _runtime[1].close()
    _runtime = None


def _deadline(context: Any, started: float) -> Deadline:
    """SCF passes a dict with `time_limit_in_ms` (the whole invocation's limit, counted from its
    start); Lambda an object whose `get_remaining_time_in_millis()` counts from now."""
    from handler.retrier import Deadline

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


def handle(event: Any, context: Any, platform: str = "scf", runtime: Runtime | None = None
           ) -> dict[str, Any]:
    """One delivery, answered in the platform's shape. `runtime` replaces the parts this
    instance would build from its environment (tests and benches pass their own)."""
    started = time.time()
    observer = Observer(correlation_id=_request_id(context) or uuid.uuid4().hex, platform=platform)
    try:
        try:
            trigger = classify_event(event)
        except BadInput as e:
            return refuse(observer, e).as_platform()
        answer = _answer(trigger, context, observer, started, runtime)
    finally:
        observer.flush_metrics()
    if trigger.kind != "http" and answer.status >= 500:
        # Nothing was recorded; failing the invocation is what makes SCF and Lambda try again.
        raise RedeliverLater(str(answer.body.get("error", "redeliver later")))
    return answer.as_platform()


def _store_unavailable() -> type[Exception]:
    from handler.ledger.store import StoreUnavailable

    return StoreUnavailable


def _answer(trigger: Trigger, context: Any, observer: Observer, started: float,
            given: Runtime | None) -> Answer:
    if trigger.http is not None:
        observer.correlation_id = (trigger.http.header("x-cmq-message-id")
                                   or trigger.http.request_id or observer.correlation_id)
    config: Config | None = given.config if given is not None else None
    try:
        config = config or Config.from_env()
        if trigger.http is not None:
            refusal = authenticate(trigger.http, config, _replay_guard, observer)
            if refusal is not None:
                return refusal
        # Imported once a delivery gets this far: a refused request never loads the ledger.
        from handler.retrier import Deadline

        rt = given or runtime(config)
        deadline = _deadline(context, started)
        flush_by = Deadline(min(deadline.at, time.time() + HTTP_FLUSH_BUDGET_S))
        return respond(trigger, rt.retrier(observer), observer, deadline, flush_by, config.regions)
    except ConfigError as e:
        # The detail names variables and values: for the operator's log, not for any caller.
        observer.error("configuration error", error=str(e))
        return Answer(503, {"error": "function misconfigured; see its log"})
    except _store_unavailable() as e:  # evaluated only when something was raised
        from handler.ledger import describe_store

        # Fail closed: nothing was retried, and a non-2xx makes the platform redeliver later.
        observer.error("ledger unavailable", store=describe_store(config.store) if config else None,
                       error=str(e))
        observer.count("ledger.errors")
        return Answer(503, {"error": "ledger unavailable; redeliver later"})
