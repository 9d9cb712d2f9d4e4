"""What runs in the child processes of the multi-process ledger tests: the function itself.

A child is a function instance. It is given the function's environment (AUTORETRY_STORE naming the
shared store, the emulator in the parent process as the Batch endpoint with its credentials,
AUTORETRY_API_SPEEDUP) and runs the real code on it: `handler.app.main_handler` for deliveries,
`handler.retrier.Retrier` from the function's own runtime for a flusher. Batch API calls go over
HTTP through the real SDK, TC3-signed; the emulator records them.

Two kinds of instrumentation are added by wrapping methods of the child's runtime, never by
replacing what they do:
- observers, which note what happened (the instant the ledger granted a token, claim outcomes);
- crash points, which SIGKILL the process at a named step of a flush.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from handler.continuation import settle
from handler.jobs import FailureKey
from handler.ledger import ClaimOutcome, Ledger, Step, Token, open_store
from handler.policy import Action, RetryDecision

from ..conftest import CONTINUATION_TIMEOUT_S

REGION = "ap-guangzhou"
SECRET_ID, SECRET_KEY = "AKIDLEDGERTEST", "ledger-test-secret"


def _become_instance(env: dict[str, str], log_path: str) -> None:
    """This process's environment is exactly the function's, and its log lines go to a file."""
    for name in list(os.environ):
        if name.startswith(("AUTORETRY_", "TENCENTCLOUD_")):
            del os.environ[name]
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own stdout
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _record_grants(ledger: Ledger, grants: dict[str, list[float]], lock: threading.Lock) -> None:
    take_token = ledger.take_token

    def observed(action: str, rate_per_s: float, window_s: float = 1.0, call_s: float = 10.0
                 ) -> Token:
        token = take_token(action, rate_per_s, window_s, call_s)
        if token.slot is not None:
            with lock:
                grants.setdefault(action, []).append(token.slot)
        return token

    ledger.take_token = observed  # type: ignore[method-assign]


# ---- the fleet: function instances of several threads, duplicate notices ---------------------


@dataclass(frozen=True)
class DeliveryPlan:
    env: dict[str, str]
    log_path: str
    events: list[dict[str, Any]]  # API Gateway events, in the order this instance receives them
    threads: int
    time_limit_ms: int = 60_000


@dataclass
class DeliveryResult:
    statuses: Counter[int] = field(default_factory=Counter)
    retried: list[str] = field(default_factory=list)  # what the answers say each invocation retried
    grants: dict[str, list[float]] = field(default_factory=dict)
    slowest_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def delivery_process(plan: DeliveryPlan, index: int, barrier: Any, results: Any) -> None:
    """Warm up one instance, wait for the others, then deliver `plan.events` from
    `plan.threads` threads at once, each calling `main_handler` as SCF would."""
    result = DeliveryResult()
    lock = threading.Lock()
    try:
        _become_instance(plan.env, plan.log_path)
        from handler import app

        rt = app.runtime()  # built once, shared by the threads as warm invocations share it
        _record_grants(rt.ledger, result.grants, lock)

        def deliver(events: list[dict[str, Any]], t: int) -> None:
            for n, event in enumerate(events):
                started = time.monotonic()
                try:
                    answer = app.main_handler(event, {"time_limit_in_ms": plan.time_limit_ms,
                                                      "request_id": f"p{index}t{t}n{n}"})
                except Exception:
                    with lock:
                        result.errors.append(f"p{index}t{t}: {traceback.format_exc(limit=3)}")
                    continue
                took = time.monotonic() - started
                body = json.loads(answer["body"])
                with lock:
                    result.statuses[int(answer["statusCode"])] += 1
                    result.retried += body.get("retried") or []
                    result.slowest_s = max(result.slowest_s, took)

        threads = [threading.Thread(target=deliver, args=(plan.events[t::plan.threads], t))
                   for t in range(plan.threads)]
        barrier.wait(timeout=60)  # every instance starts delivering together
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        # An instance in the cloud lives on while the continuations it asked for run; this one
        # ends with its process, so it waits for them and counts what they retried.
        answers, running = settle(CONTINUATION_TIMEOUT_S)
        for answer in answers:
            if isinstance(answer, dict):
                result.retried += json.loads(answer["body"]).get("retried") or []
        if running:
            result.errors.append(f"p{index}: {running} continuations still running after "
                                 f"{CONTINUATION_TIMEOUT_S:g} s")
    except Exception:
        result.errors.append(f"p{index}: {traceback.format_exc(limit=5)}")
    results.put(result)


# ---- the crash: one flusher at a time, killed at a step of its flush ---------------------------


@dataclass(frozen=True)
class FlusherPlan:
    env: dict[str, str]
    log_path: str
    steps_path: str  # one line per observed step: "claimed <job>", "taken_over <job>", "died <at>"
    # Where to SIGKILL itself, on the first flush that gets there: "claim:<k>" after the k-th claim
    # granted (some claimed, none called), "call" after RetryJobs answered (nothing recorded),
    # "record:<k>" after the k-th outcome recorded, "step:<k>" after the k-th of any of those.
    # None: flush until nothing comes due.
    crash_at: str | None
    linger_s: float  # wait this long for entries coming due (a dead flusher's leases)
    run_s: float = 45.0


def _append(path: str, lines: list[str]) -> None:
    # One write() on an O_APPEND file: a SIGKILL leaves all of it or none of it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, "".join(line + "\n" for line in lines).encode())
    finally:
        os.close(fd)


def _crash_points(retrier: Any, plan: FlusherPlan) -> None:
    """Wrap the retrier's ledger and gateway so the process dies at `plan.crash_at`, noting each
    step (a claim granted, the call answered, an outcome recorded or confirmed) on the way."""
    point, _, nth = (plan.crash_at or "").partition(":")
    count: Counter[str] = Counter()

    ledger, gateway = retrier.ledger, retrier.gateway
    apply = ledger.apply

    def step_line(step: Step, out: Any) -> tuple[str, str | None]:
        """The step's kind and its line, if it is one the plan counts."""
        if step.name == "claim" and out in (ClaimOutcome.CLAIMED, ClaimOutcome.TAKEN_OVER):
            return "claim", f"{out.value} {step.subject.job_id}"
        if step.name == "retried":
            return "record", f"recorded {step.subject.job_id}"
        if step.name == "confirmed":
            return "confirm", f"confirmed {step.subject.job_id}"
        return step.name, None

    def applied(steps: list[Step]) -> list[Any]:
        # The flush applies its ledger work in batches (one commit for a batch's claims, one for
        # its records): the process dies after the batch that holds the planned step, having
        # noted the steps before it, as a crash just after that commit would leave things.
        results = apply(steps)
        for step, out in zip(steps, results, strict=True):
            name, line = step_line(step, out)
            note(name, line)
        return results

    def note(name: str, line: str | None) -> None:
        if not line:
            return
        _append(plan.steps_path, [line])
        count[name] += 1
        count["step"] += 1
        if (point == name and (name == "call" or count[name] == int(nth))) or \
                (point == "step" and count["step"] == int(nth)):
            _append(plan.steps_path, [f"died {plan.crash_at}"])
            os.kill(os.getpid(), signal.SIGKILL)

    def called(*args: Any) -> Any:
        out = retry_jobs(*args)
        note("call", f"called {' '.join(args[1])}")
        return out

    retry_jobs = gateway.retry_jobs
    ledger.apply = applied
    gateway.retry_jobs = called


def flusher_process(plan: FlusherPlan, ready: Any, go: Any) -> None:
    """One flusher: the function's runtime, its Retrier draining the shared queue."""
    _become_instance(plan.env, plan.log_path)
    from handler import app
    from handler.observe import Observer
    from handler.retrier import Deadline

    rt = app.runtime()
    retrier = rt.retrier(Observer(correlation_id=f"flusher-{os.getpid()}"))
    _crash_points(retrier, plan)
    ready.set()
    if not go.wait(120):
        return
    report = retrier.drain(Deadline.after(plan.run_s), wait=True, linger_s=plan.linger_s)
    _append(plan.steps_path, [f"finished {len(report.retried)} {report.stopped}"])


# ---- the same claims at the same instant, at the ledger's level --------------------------------

END_TIME = "2026-11-24T10:00:00Z"
DECISION = RetryDecision(Action.RETRY, "test", "multi-process test", cap=1, counter="attempts")


def job_id(n: int) -> str:
    return f"job-{n:08d}"


def failure(job: str) -> FailureKey:
    return FailureKey(REGION, job, END_TIME)


def racing_claims_process(url: str, jobs: list[str], threads: int, index: int, barrier: Any,
                          results: Any) -> None:
    """Every thread claims every failure of `jobs`, in the same order, all starting together."""
    outcomes: list[tuple[str, str]] = []
    errors: list[str] = []
    lock = threading.Lock()
    try:
        store = open_store(url)

        def claim_all(t: int) -> None:
            ledger = Ledger(store, owner=f"p{index}t{t}")
            try:
                for job in jobs:
                    outcome = ledger.claim(failure(job), DECISION, 30.0)
                    with lock:
                        outcomes.append((job, outcome.value))
            except Exception as e:
                with lock:
                    errors.append(f"p{index}t{t}: {type(e).__name__}: {e}")

        workers = [threading.Thread(target=claim_all, args=(t,)) for t in range(threads)]
        barrier.wait(timeout=60)
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        store.close()
    except Exception as e:
        errors.append(f"p{index}: {type(e).__name__}: {e}")
    results.put((outcomes, errors))
