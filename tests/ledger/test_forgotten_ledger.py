"""The ledger emptied mid-run, through the retrier: with AUTORETRY_LEDGER_ID set nothing is
retried until an operator adopts the emptied ledger; then every due job is retried once.

What an adopted ledger cannot know: the retries spent before it was emptied. The fake API keeps
no tags (the memory on the job, handler/tags.py), so a job that had spent 2 of its 3 gets 3 more,
counted from the adoption (the cap holds from there); the identity check is what turns that silent
fresh budget into an operator's decision."""

from __future__ import annotations

import os
import time

import pytest

from handler.jobs import JobRef
from handler.ledger import Ledger, Store
from handler.ledger.identity import LEDGER_ID_VARIABLE, LedgerForgot
from handler.observe import Observer
from handler.policy import DefaultPolicy
from handler.retrier import Deadline, Retrier, Settings

from ..core.fakes import Clock, FakeGateway
from .wipes import forget_everything

REGION = "ap-guangzhou"
JOBS = [f"job-{i:08d}" for i in range(6)]
COPIES = 3  # each notice is delivered three times


def end(clock: Clock, ago: float = 1) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - ago))


def fail_all_again(gw: FakeGateway, retrier: Retrier, clock: Clock) -> None:
    """Every job fails (again: a new EndTime), and its notice arrives three times."""
    clock.now += 10
    for j in JOBS:
        gw.fail(j, end(clock))
    for _ in range(COPIES):
        for j in JOBS:
            retrier.enqueue(JobRef(REGION, j), "JOB_FAILED", {})


def test_emptied_ledger_retries_nothing_until_adopted_then_each_due_job_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, gw = Clock(), FakeGateway()
    settings = Settings()
    ledger = Ledger(store, clock=clock)
    # the deployment: `ledger init` printed an identity, the function is given it
    monkeypatch.setenv(LEDGER_ID_VARIABLE, ledger.init_identity())
    ledger.check_identity(os.environ[LEDGER_ID_VARIABLE])
    retrier = Retrier(ledger, gw, DefaultPolicy(), settings=settings,  # type: ignore[arg-type]
                      observer=Observer(quiet=True), clock=clock, sleep=clock.sleep)

    def drain() -> None:
        retrier.drain(Deadline(clock.now + 60, clock))

    for _ in range(2):  # two failures each: 2 of the default cap of 3 spent
        fail_all_again(gw, retrier, clock)
        drain()
    assert [gw.count(j) for j in JOBS] == [2] * len(JOBS)

    forget_everything(store)  # e.g. a failover to a copy that had nothing
    fail_all_again(gw, retrier, clock)
    with pytest.raises(LedgerForgot):
        drain()
    with pytest.raises(LedgerForgot):  # an instance starting cold finds it too
        Ledger(store).check_identity(os.environ[LEDGER_ID_VARIABLE])
    with pytest.raises(LedgerForgot):  # `ledger init` without --adopt will not paper over it
        Ledger(store).init_identity(expected=os.environ[LEDGER_ID_VARIABLE])
    clock.now += settings.lease_s + 1
    with pytest.raises(LedgerForgot):  # however often it is tried
        drain()
    assert [gw.count(j) for j in JOBS] == [2] * len(JOBS)

    # the operator adopts the emptied ledger and gives the function its new identity
    adopted = Ledger(store).init_identity(adopt=True, expected=os.environ[LEDGER_ID_VARIABLE])
    monkeypatch.setenv(LEDGER_ID_VARIABLE, adopted)
    ledger.check_identity(os.environ[LEDGER_ID_VARIABLE])
    clock.now += settings.lease_s + 1  # the entries the refused flush had taken come due again
    drain()
    assert [gw.count(j) for j in JOBS] == [3] * len(JOBS)  # every due job, once
    for _ in range(COPIES):  # redeliveries of the same failure change nothing
        for j in JOBS:
            retrier.enqueue(JobRef(REGION, j), "JOB_FAILED", {})
    drain()
    assert [gw.count(j) for j in JOBS] == [3] * len(JOBS)

    for _ in range(4):  # they keep failing: the cap holds, counted from the adoption
        fail_all_again(gw, retrier, clock)
        drain()
    assert [gw.count(j) for j in JOBS] == [5] * len(JOBS)  # 2 before, 3 after: see the docstring
