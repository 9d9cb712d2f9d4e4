"""A claim is durable before the call it guards: on Redis with a replica, the flush waits for the
replica to acknowledge its claims (WAIT) before RetryJobs, and a replica that does not answer in
time fails the flush closed.

Each test starts its own redis-servers on free ports (a primary, and a replica of it), in memory
only, so that the replica is the only thing that keeps a write when the primary is lost; the
shared Redis on 6379 is only read (it has no replicas: nothing to wait for)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.durable import RedisNode
from handler.jobs import FailureKey, JobRef
from handler.ledger import ClaimOutcome, FailureState, Ledger, StoreUnavailable
from handler.ledger.redis import RedisStore
from handler.observe import Observer
from handler.policy import Action, DefaultPolicy, RetryDecision
from handler.retrier import Deadline, Retrier, Settings

from ..core.fakes import Clock, FakeGateway
from .conftest import REDIS_URL, delete_redis_prefix, redis_prefix

pytestmark = pytest.mark.skipif(not RedisNode.available(),
                                reason="redis-server is not installed (CI installs it)")

REGION = "ap-guangzhou"
SPEND = RetryDecision(Action.RETRY, "default", "retry 1 of 3")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisNode, RedisNode]]:
    primary = RedisNode(tmp_path).start()
    replica = RedisNode(tmp_path)
    try:
        replica.start(replica_of=primary)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def keys(n: int) -> list[FailureKey]:
    return [FailureKey(REGION, f"job-{i:08d}", "2026-11-24T10:00:00Z") for i in range(n)]


def test_claims_acknowledged_by_the_replica_survive_the_primarys_loss(
        pair: tuple[RedisNode, RedisNode]) -> None:
    primary, replica = pair
    prefix = redis_prefix()
    ledger = Ledger(RedisStore(primary.url(prefix)))
    identity = ledger.init_identity()
    ledger.check_identity(identity)
    ledger.wait_durable()  # the identity itself, and the replica counted

    replica.pause()  # the replica stalls: nothing it has not acknowledged may be relied on
    claimed = ledger.apply([ledger.claim_step(k, SPEND, 60) for k in keys(20)])
    assert claimed == [ClaimOutcome.CLAIMED] * 20
    threading.Timer(0.3, replica.resume).start()
    started = time.monotonic()
    ledger.wait_durable(1.4)
    assert time.monotonic() - started >= 0.25  # it waited for the replica, not for nothing

    primary.kill()  # at once, as a call would follow: the primary and all it held are gone
    replica.promote()
    promoted = Ledger(RedisStore(replica.url(prefix)))
    promoted.check_identity(identity)
    for k in keys(20):
        assert promoted.state(k) is not None and promoted.state(k)[0] == FailureState.CLAIMED  # type: ignore[index]
        assert promoted.history(k.job).spent() == 1


def end(clock: Clock, ago: float = 5) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - ago))


def test_a_replica_that_does_not_acknowledge_fails_the_flush_closed(
        pair: tuple[RedisNode, RedisNode]) -> None:
    primary, replica = pair
    prefix = redis_prefix()
    clock = Clock()
    ledger = Ledger(RedisStore(primary.url(prefix)), clock=clock)
    ledger.check_identity(ledger.init_identity())
    gw = FakeGateway()
    jobs = [f"job-{i:08d}" for i in range(5)]
    for j in jobs:
        gw.fail(j, end(clock))
    settings = Settings()
    retrier = Retrier(ledger, gw, DefaultPolicy(), settings=settings,  # type: ignore[arg-type]
                      observer=Observer(quiet=True), clock=clock, sleep=clock.sleep)
    for j in jobs:
        retrier.enqueue(JobRef(REGION, j), "JOB_FAILED", {})

    replica.pause()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas acknowledged"):
        retrier.drain(Deadline(clock.now + 60, clock))
    assert 0.9 <= time.monotonic() - started < 4  # the wait's 1 s, then it gives up
    assert gw.retried == []  # nothing is called on a claim a failover could lose
    for j in jobs:  # the claims are held, not released: whoever comes next re-reads the job
        state = ledger.state(FailureKey(REGION, j, gw.jobs[j]["EndTime"]))
        assert state is not None and state[0] == FailureState.CLAIMED

    replica.resume()
    clock.now += settings.lease_s + 1  # the leases end; the next flush takes the claims over
    retrier.drain(Deadline(clock.now + 60, clock))
    assert sorted(j for batch in gw.retried for j in batch) == jobs


def test_a_replica_that_left_is_counted_again_after_one_failed_wait(
        pair: tuple[RedisNode, RedisNode]) -> None:
    primary, replica = pair
    ledger = Ledger(RedisStore(primary.url(redis_prefix())))
    ledger.claim(keys(1)[0], SPEND, 60)
    ledger.wait_durable()  # one replica counted
    replica.kill()
    deadline = time.monotonic() + 10
    while primary.online_replicas() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(StoreUnavailable):  # waited for the replica it knew of
        ledger.wait_durable(0.2)
    ledger.wait_durable(0.2)  # counted again: none left, so nothing to wait for


def test_a_server_without_replicas_is_not_waited_on() -> None:
    prefix = redis_prefix()
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    try:
        Ledger(store).claim(keys(1)[0], SPEND, 60)
        started = time.monotonic()
        Ledger(store).wait_durable()
        assert time.monotonic() - started < 0.5
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        assert client.exists(f"{prefix}durable") == 0  # no marker written, no WAIT sent
        client.close()
    finally:
        store.close()
        delete_redis_prefix(prefix)

