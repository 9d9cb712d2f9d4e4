"""Platform entry points: `main_handler` (Tencent SCF) and `lambda_handler` (AWS Lambda).

The only module that reads the environment and wires the parts together. Parts are built once per
instance and shared by warm invocations, those running at once included. What the parts are is
decided here; what a delivery means is ingress's business.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handler import auth
from handler.config import Config, ConfigError
from handler.ingress import Answer, BadInput, Trigger, authenticate, classify_event, refuse, respond
from handler.observe import Observer
from handler.secrets import SecretUnavailable, load_tencent_key

if TYPE_CHECKING:
    from handler.cmq import QueueClient
    from handler.gateway import BatchGateway
    from handler.ledger import Ledger, Store
    from handler.notify import Notifications, NotifySettings
    from handler.policy import Policy
    from handler.retrier import Deadline, Retrier, Settings
    from handler.tags import TagMemory

DEFAULT_TIME_LIMIT_S = 30.0
# An HTTP push is answered within 10 s of its start (the topic gives up after ~15 s and pushes
# again): the invocation that wins the drainer lease drains for the fleet for 8 s at most, then
# hands what is still due to a continuation (handler.continuation), which nobody waits for.
HTTP_FLUSH_BUDGET_S = 8.0
# Invocations nobody waits on (a continuation, a queue or direct invocation) drain this long at
# most; the function's timeout bounds them further (serverless.yml sets 60 s).
FLUSH_BUDGET_S = 55.0
TIME_RESERVE_S = 1.0


@dataclass
class Runtime:
    config: Config
    ledger: Ledger
    gateway: BatchGateway
    policy: Policy
    settings: Settings
    tags: TagMemory | None = None
    notifications: Notifications | None = None

    def retrier(self, observer: Observer) -> Retrier:
        from handler.retrier import Retrier

        return Retrier(self.ledger, self.gateway, self.policy, settings=self.settings,
                       observer=observer, tags=self.tags, notifications=self.notifications)

    def close(self) -> None:
        self.ledger.store.close()


@dataclass(eq=False)
class _Kept:
    """The instance's parts for one configuration, and how many invocations are using them."""

    config: Config
    runtime: Runtime
    users: int = 0
    replaced: bool = False  # a newer configuration's parts are the instance's now


# Invocations running at once in one process (`serve`'s threads, SCF's per-instance concurrency, a
# continuation beside a request) share one set of parts. The lock makes them build it once; parts
# that a changed configuration replaces are closed by the last invocation using them, never under
# one (a Redis client closed under its user fails its read).
_kept: _Kept | None = None
_kept_lock = threading.Lock()
_replay_guard = auth.ReplayGuard()  # thread-safe


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
    from handler.gateway import BatchGateway
    from handler.ledger import Ledger, open_store
    from handler.retrier import Settings

    policy = _load_policy(config.policy)  # before the store: a bad policy leaves nothing open,
    notify = _notify_settings(policy)  # nor does a bad AUTORETRY_NOTIFY_* setting
    store = open_store(config.store)
    # AUTORETRY_API_SPEEDUP (emulator only) scales every pace.
    settings = Settings.scaled(config.api_speedup, dry_run=config.dry_run, regions=config.regions)
    return Runtime(
        config=config,
        ledger=Ledger(store, retention_s=config.retention_s),
        gateway=gateway or BatchGateway(endpoint=config.batch_endpoint,
                                        protocol=config.batch_protocol,
                                        timeout_s=settings.call_timeout_s),
        policy=policy,
        settings=settings,
        tags=_tag_memory(config, settings),
        notifications=_notifications(config, notify, store),
    )


def _notify_settings(policy: Policy) -> NotifySettings | None:
    """The give-up messages' settings, where some channel is configured (AUTORETRY_NOTIFY_*_URL).
    Whatever AUTORETRY_NOTIFY_* is set is checked, a channel or not (a wrong one is a
    ConfigError); with none set the package is not imported."""
    if not any(k.startswith("AUTORETRY_NOTIFY_") and v.strip() for k, v in os.environ.items()):
        return None
    from handler.notify import NotifySettings

    settings = NotifySettings.from_env(os.environ, policy_outcomes=policy.notify_outcomes)
    return settings if settings.enabled else None


def _notifications(config: Config, settings: NotifySettings | None, store: Store
                   ) -> Notifications | None:
    if settings is None:
        return None
    from handler.notify import Notifications, Outbox

    return Notifications(Outbox(store, retention_s=config.retention_s), settings)


def _tag_memory(config: Config, settings: Settings) -> TagMemory | None:
    """The retries each job spent, written onto the job (handler.tags), where the account is
    known: AUTORETRY_ACCOUNT_UIN names it (a job's tag resource carries it)."""
    uin = os.environ.get("AUTORETRY_ACCOUNT_UIN", "").strip()
    if not uin or config.dry_run:
        return None
    from handler.tags import TagMemory

    # AUTORETRY_TAG_ENDPOINT reaches another Tag service address; a local Batch API (the emulator,
    # over http) answers for the Tag service too.
    endpoint = os.environ.get("AUTORETRY_TAG_ENDPOINT", "").strip() or (
        config.batch_endpoint if config.batch_protocol == "http" else None)
    return TagMemory(uin, endpoint=endpoint, protocol=config.batch_protocol,
                     timeout_s=settings.call_timeout_s, rate_per_s=20.0 * config.api_speedup)


def runtime(config: Config | None = None) -> Runtime:
    """The parts for the current environment, built on first use and kept while it is unchanged.
    A setting that cannot be used raises `ConfigError`; a store that cannot be reached,
    `StoreUnavailable`. They stay open until the configuration changes; an invocation holds them
    with `runtime_in_use` instead, so that a change cannot close them under it."""
    config = Config.from_env() if config is None else config
    kept = _kept
    if kept is not None and kept.config == config:  # a warm invocation takes no lock
        return kept.runtime
    return _keep(config, use=False).runtime


@contextlib.contextmanager
def runtime_in_use(config: Config | None = None) -> Iterator[Runtime]:
    """`runtime(config)`, held for the block: parts that a changed configuration replaces meanwhile
    are closed only when the last block using them ends."""
    kept = _keep(Config.from_env() if config is None else config, use=True)
    try:
        yield kept.runtime
    finally:
        with _kept_lock:
            kept.users -= 1
            last = kept.replaced and kept.users == 0
        if last:
            kept.runtime.close()


def _keep(config: Config, *, use: bool) -> _Kept:
    with _kept_lock:
        kept, unused = _kept, None
        if kept is None or kept.config != config:
            # Built under the lock: invocations that start together wait for this one build
            # instead of each building its own and closing the others' when it replaces them.
            kept = _Kept(config, _build(config))
            unused = _replace(kept)  # the old configuration's store is closed, not leaked
        if use:
            kept.users += 1
    if unused is not None:
        unused.close()
    return kept


def _build(config: Config) -> Runtime:
    try:
        return build_runtime(config)
    except ConfigError:
        raise
    except ValueError as e:  # a policy file or a store URL that cannot be used
        raise ConfigError(str(e)) from None


def _replace(new: _Kept | None) -> Runtime | None:
    """Make `new` the instance's parts (the lock held); the replaced parts if nobody is using them
    (to close), else None: their last user closes them."""
    global _kept
    old, _kept = _kept, new
    if old is None:
        return None
    old.replaced = True
    return old.runtime if old.users == 0 else None


def reset_runtime() -> None:
    """Forget the parts (tests, the demo): the next invocation builds them anew. They are closed
    now, or by the last invocation still using them."""
    with _kept_lock:
        unused = _replace(None)
    if unused is not None:
        unused.close()


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
        if answer.more_due:
            _continue(platform, context, observer, runtime)
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
        _load_secrets()
        if trigger.http is not None:
            refusal = authenticate(trigger.http, config, _replay_guard, observer)
            if refusal is not None:
                return refusal
        # Imported once a delivery gets this far: a refused request never loads the ledger.
        from handler.retrier import Deadline

        parts: contextlib.AbstractContextManager[Runtime] = (
            contextlib.nullcontext(given) if given is not None else runtime_in_use(config))
        with parts as rt:
            if config.ledger_id:  # a deployment's ledger: refuse one that forgot (docs/ledger.md)
                rt.ledger.check_identity(config.ledger_id)
            deadline = _deadline(context, started)
            budget = HTTP_FLUSH_BUDGET_S if trigger.kind == "http" else FLUSH_BUDGET_S
            flush_by = Deadline(min(deadline.at, started + budget))
            queue = _queue() if trigger.kind == "pull" else None
            return respond(trigger, rt.retrier(observer), observer, deadline, flush_by,
                           config.regions, queue)
    except ConfigError as e:
        # The detail names variables and values: for the operator's log, not for any caller.
        observer.error("configuration error", error=str(e))
        return Answer(503, {"error": "function misconfigured; see its log"})
    except SecretUnavailable as e:
        observer.error("the Tencent key could not be read from the secret store", error=str(e))
        return Answer(503, {"error": "credentials unavailable; redeliver later"})
    except _store_unavailable() as e:  # evaluated only when something was raised
        from handler.ledger import describe_store
        from handler.ledger.identity import LedgerForgot

        if isinstance(e, LedgerForgot):
            # It may have lost claims and retries spent: nothing is retried until an operator
            # adopts it (python -m handler ledger init --adopt).
            observer.error("ledger forgot", store=describe_store(config.store) if config else None,
                           error=str(e))
            observer.count(LedgerForgot.metric)
            return Answer(503, {"error": "ledger forgot; redeliver later"})

        # Fail closed: nothing was retried, and a non-2xx makes the platform redeliver later.
        observer.error("ledger unavailable", store=describe_store(config.store) if config else None,
                       error=str(e))
        observer.count("ledger.errors")
        return Answer(503, {"error": "ledger unavailable; redeliver later"})


def _continue(platform: str, context: Any, observer: Observer, given: Runtime | None) -> None:
    """Hand the work still due to an asynchronous run of this function. In the cloud the platform
    runs it; locally (`serve`, the benches) a thread of this process does. If it cannot start,
    the timer drains what is due: nothing is lost."""
    from handler.config import in_cloud
    from handler.continuation import ContinuationError, ThreadContinuation, for_invocation

    if in_cloud(os.environ):
        continuation = for_invocation(platform, context)
    else:
        def run(event: dict[str, Any]) -> object:
            try:
                return handle(event, {"time_limit_in_ms": FLUSH_BUDGET_S * 1000}, platform, given)
            except RedeliverLater as e:  # the ledger failed: the timer drains what is due
                observer.error("continuation failed; the timer will drain what is due",
                               error=str(e))
                return None
        continuation = ThreadContinuation(run)
    if continuation is None:
        observer.warning("work still due and no continuation here; the timer will drain it")
        return
    try:
        continuation.start()
    except ContinuationError as e:
        observer.error("could not start a continuation; the timer will drain what is due",
                       error=str(e))


def _load_secrets() -> None:
    # Lambda gets the Tencent key from SSM or Secrets Manager, once per instance (handler.secrets);
    # elsewhere no secret is named and this costs nothing.
    load_tencent_key()


_queue_client: tuple[str, QueueClient] | None = None
_queue_lock = threading.Lock()


def _queue() -> QueueClient | None:
    """The TDMQ-CMQ queue a pull tick reads (AUTORETRY_QUEUE), kept while its settings hold. Pull
    ticks running at once share it (a QueueClient is safe to share between threads)."""
    global _queue_client
    from handler.cmq import QueueSettings

    if not os.environ.get("AUTORETRY_QUEUE", "").strip():
        return None
    try:
        settings = QueueSettings.from_env()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    key = f"{settings.queue}@{settings.url}"
    with _queue_lock:
        if _queue_client is None or _queue_client[0] != key:
            # The one it replaces may be mid-call on another thread: it is left to be collected.
            _queue_client = (key, settings.client())
        return _queue_client[1]
