"""The operator's word is final: a held job is never retried, whether a notice or the sweep finds its
failure, on every store; once released, its next failures are decided as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.jobs import FailureKey, JobRef
from handler.ledger import FailureState, Ledger, Store
from handler.observe import Observer
from handler.policy import DefaultPolicy, Failure, RetryDecision
from handler.retrier import Deadline, Retrier, Settings

from ..ledger.conftest import STORES
from .fakes import Clock, FakeGateway
from .test_retrier import REGION, deadline, end

HELD = JobRef(REGION, "job-0000held")
OTHER = JobRef(REGION, "job-000other")
REASON = "bad input; fixing the data first"


def retrier(store: Store, clock: Clock, gw: FakeGateway, policy: DefaultPolicy | None = None
            ) -> Retrier:
    return Retrier(Ledger(store, clock=clock), gw, policy or DefaultPolicy(),  # type: ignore[arg-type]
                   settings=Settings(), observer=Observer(quiet=True), clock=clock,
                   sleep=clock.sleep)


def held_lines(r: Retrier) -> list[dict[str, object]]:
    return [d for d in r.observer.decisions if d["outcome"] == "held"]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_held_job_is_never_retried_by_its_notices_or_by_the_sweep(kind: str,
                                                                      tmp_path: Path) -> None:
    clock, gw = Clock(), FakeGateway()
    gw.fail(HELD.job_id, end(clock))
    gw.fail(OTHER.job_id, end(clock))
    with STORES[kind](tmp_path) as store:
        r = retrier(store, clock, gw)
        r.ledger.hold_job(HELD, REASON)
        for _ in range(3):  # its notice, and the topic's copies
            r.enqueue(HELD, "JOB_FAILED", {})
            r.drain(deadline(clock))
        r.sweep(Deadline(clock.now + 60, clock))
        clock.now += 600  # nothing was left to come due later
        r.sweep(Deadline(clock.now + 60, clock))

        assert gw.count(HELD.job_id) == 0
        assert gw.count(OTHER.job_id) == 1  # the sweep did find the other lost failure
        assert len(held_lines(r)) == 3
        assert {(d["rule"], d["reason"], d["action"]) for d in held_lines(r)} == {
            ("hold", REASON, "SKIP")}
        assert r.ledger.take(100, 30) == []  # its queue entry left
        record = r.ledger.job(HELD)
        assert record is not None
        [decision] = record["decisions"]
        assert (decision["outcome"], decision["reason"], decision["repeats"]) == ("held", REASON, 2)
        key = FailureKey(REGION, HELD.job_id, gw.jobs[HELD.job_id]["EndTime"])
        assert r.ledger.state(key) == (FailureState.HELD, 0.0)
        assert r.ledger.history(HELD).spent() == 0


class HeldMeanwhile(DefaultPolicy):
    """Decides as the built-in default does; meanwhile, between the flush's look at the ledger and
    its claim, an operator (another process) holds the job."""

    def __init__(self, operator: Ledger) -> None:
        super().__init__()
        self.operator = operator

    def decide(self, failure: Failure) -> RetryDecision:
        self.operator.hold_job(failure.key.job, "held while the flush decided")
        return super().decide(failure)


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_hold_written_after_the_flush_looked_is_seen_by_its_claim(kind: str,
                                                                     tmp_path: Path) -> None:
    clock, gw = Clock(), FakeGateway()
    gw.fail(HELD.job_id, end(clock))
    with STORES[kind](tmp_path) as store:
        r = retrier(store, clock, gw, HeldMeanwhile(Ledger(store, clock=clock, owner="operator")))
        r.enqueue(HELD, "JOB_FAILED", {})
        r.drain(deadline(clock))

        assert gw.retried == []
        [line] = held_lines(r)
        assert line["reason"] == "held while the flush decided"
        assert r.ledger.history(HELD).spent() == 0 and r.ledger.take(100, 30) == []


@pytest.mark.parametrize("kind", sorted(STORES))
def test_once_released_the_next_failure_is_retried_and_the_held_one_only_if_notified_again(
        kind: str, tmp_path: Path) -> None:
    clock, gw = Clock(), FakeGateway()
    gw.fail(HELD.job_id, end(clock))
    with STORES[kind](tmp_path) as store:
        r = retrier(store, clock, gw)
        r.ledger.hold_job(HELD, REASON)
        r.enqueue(HELD, "JOB_FAILED", {})
        r.drain(deadline(clock))
        assert r.ledger.release_job(HELD) is not None

        r.sweep(Deadline(clock.now + 60, clock))  # the failure that came while held stays alone
        assert gw.count(HELD.job_id) == 0
        r.enqueue(HELD, "JOB_FAILED", {})  # its notice again (`python -m handler push`)
        r.drain(deadline(clock))
        assert gw.count(HELD.job_id) == 1
        clock.now += 30
        gw.fail(HELD.job_id, end(clock, ago=1))  # it fails again: decided as any failure
        r.enqueue(HELD, "JOB_FAILED", {})
        r.drain(deadline(clock))
        assert gw.count(HELD.job_id) == 2
        assert r.ledger.history(HELD).spent() == 2
        assert [d["outcome"] for d in r.observer.decisions] == ["held", "retried", "retried"]
