"""The hand-off between invocations does not rest on the due index, which DynamoDB keeps eventually
consistent: with the index `LAG_S` behind the table (tests/ledger/lagging.py), every notice is
retried by an invocation that is already running, none waits for a timer (no timer runs here), and
entries the index still lists after they were taken or deleted cost no API call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from handler.jobs import JobRef
from handler.ledger import Ledger, Store
from handler.observe import Observer
from handler.policy import DefaultPolicy
from handler.retrier import Deadline, FlushReport, Retrier, Settings

from ..core.fakes import FakeGateway
from .lagging import LaggingIndex

REGION = "ap-guangzhou"
LAG_S = 1.5  # under INDEX_LAG_S (handler.retrier), the lag the drainer allows for
HTTP_BUDGET_S = 8.0  # handler.app.HTTP_FLUSH_BUDGET_S


@pytest.fixture
def lagging(store: Store) -> Iterator[LaggingIndex]:
    yield LaggingIndex(store, LAG_S)


def failed(gw: FakeGateway, n: int, first: int = 0) -> list[str]:
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    ids = [f"job-{i:08d}" for i in range(first, first + n)]
    for job_id in ids:
        gw.fail(job_id, end)
    return ids


def notice(store: Store, gw: FakeGateway, job_id: str) -> FlushReport:
    """One invocation for one notice, as ingress runs it: enqueue, then pump."""
    retrier = Retrier(Ledger(store), gw, DefaultPolicy(), settings=Settings.scaled(20),
                      observer=Observer(quiet=True))
    retrier.enqueue(JobRef(REGION, job_id), "JOB_FAILED", {})
    return retrier.pump(Deadline.after(HTTP_BUDGET_S))


def deliver(store: Store, gw: FakeGateway, waves: list[list[list[str]]], pause_s: float
            ) -> list[FlushReport]:
    """Each wave: one thread per list of ids, each delivering its notices one after another (an
    instance's invocations); `pause_s` between waves. Returns every invocation's report."""
    reports: list[FlushReport] = []
    for i, wave in enumerate(waves):
        if i:
            time.sleep(pause_s)
        threads = [threading.Thread(target=lambda ids=ids: reports.extend(
            notice(store, gw, j) for j in ids)) for ids in wave]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    return reports


def test_a_lone_notice_is_retried_by_its_own_invocation_though_the_index_does_not_show_it_yet(
        lagging: LaggingIndex) -> None:
    gw = FakeGateway()
    [job_id] = failed(gw, 1)
    report = notice(lagging, gw, job_id)
    assert report.retried == [job_id]
    assert gw.retried == [[job_id]]


def test_notices_that_find_a_drainer_at_work_are_retried_before_it_leaves(
        lagging: LaggingIndex) -> None:
    gw = FakeGateway()
    ids = failed(gw, 60)
    burst = [ids[i:40:8] for i in range(8)]  # 8 instances, 5 notices each, all at once
    last = [ids[40 + i::4] for i in range(4)]  # then a last wave of 20, while the first drains
    deliver(lagging, gw, [burst, last], pause_s=0.3)
    retried = sorted(j for batch in gw.retried for j in batch)
    assert retried == ids, f"{len(set(ids) - set(retried))} of {len(ids)} jobs left for a timer"
    assert lagging.inner.due(time.time() + 3600, 10) == []  # nothing left waiting in the table
    described = [j for call in gw.described for j in call]
    assert sorted(described) == ids  # each job looked at once: stale index rows cost no call


def test_knocks_beyond_the_record_s_room_are_found_in_the_index_before_the_drainer_leaves(
        lagging: LaggingIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    from handler.ledger import turns

    monkeypatch.setattr(turns, "MAX_KNOCKS", 10)  # the record names 10 keys; 5 more only knock
    gw = FakeGateway()
    ids = failed(gw, 15)
    drainer = Retrier(Ledger(lagging, owner="drainer"), gw, DefaultPolicy(),
                      settings=Settings.scaled(20), observer=Observer(quiet=True))
    assert drainer.ledger.acquire_drainer(30)
    for job_id in ids:  # each finds the drainer's lease: knocks, and leaves
        assert notice(lagging, gw, job_id).stopped == "busy"
    report = drainer.pump(Deadline.after(HTTP_BUDGET_S))
    assert sorted(report.retried) == ids
    assert not report.left_due


def test_an_invocation_that_wrote_more_than_a_knock_names_drains_every_entry_it_wrote(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # A queue pull accepts many notices, then pumps: the drainer reads the latest it wrote before
    # every flush, and the rest by key once the index shows nothing. Here the index shows nothing
    # for the whole invocation.
    monkeypatch.setattr("handler.retrier.MAX_KNOCKS", 10)
    gw = FakeGateway()
    ids = failed(gw, 25)
    retrier = Retrier(Ledger(LaggingIndex(store, 60.0)), gw, DefaultPolicy(),
                      settings=Settings.scaled(20), observer=Observer(quiet=True))
    for job_id in ids:
        retrier.enqueue(JobRef(REGION, job_id), "JOB_FAILED", {})
    report = retrier.pump(Deadline.after(HTTP_BUDGET_S))
    assert sorted(report.retried) == ids
    assert sorted(j for call in gw.described for j in call) == ids
