"""The ledger knows when it forgot: its identity record, the check, the claim guard, adoption.

Runs on every store (SQLite, the real Redis, DynamoDB under moto); a store is emptied behind the
ledger's back the way a store that forgot is (`wipes.forget_everything`)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from handler.jobs import FailureKey
from handler.ledger import ClaimOutcome, Ledger, Record, Store, StoreUnavailable, Write
from handler.ledger.identity import ADOPT_COMMAND, IDENTITY_KEY, LEDGER_ID_VARIABLE, LedgerForgot
from handler.ledger.setup import init_command
from handler.policy import Action, RetryDecision

from .conftest import FakeClock
from .wipes import forget_everything

REGION = "ap-guangzhou"
SPEND = RetryDecision(Action.RETRY, "default", "retry 1 of 3")


def key(n: int) -> FailureKey:
    return FailureKey(REGION, f"job-{n:08d}", "2026-11-24T10:00:00Z")


def test_identity_is_created_once_and_read_back_the_same(store: Store) -> None:
    ledger = Ledger(store)
    assert ledger.identity() is None
    first = ledger.init_identity()
    assert len(first) == 32
    assert Ledger(store).init_identity() == first
    assert Ledger(store).init_identity(adopt=True) == first  # adopting a ledger that remembers: no-op
    assert Ledger(store).identity() == first


def test_concurrent_setups_agree_on_one_identity(store: Store) -> None:
    if "dynamodb" in store.name:
        pytest.skip("moto in-process is not safe across threads")
    found: list[str] = []
    start = threading.Barrier(6)

    def setup() -> None:
        start.wait()
        found.append(Ledger(store).init_identity())

    threads = [threading.Thread(target=setup) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 6 and len(set(found)) == 1


def test_without_an_expected_identity_the_ledger_initialises_itself(store: Store) -> None:
    ledger = Ledger(store)
    ledger.check_identity(None)
    made = ledger.identity()
    assert made is not None
    forget_everything(store)
    Ledger(store).check_identity(None)  # a local run: a new ledger, as before this check existed
    assert Ledger(store).identity() not in (None, made)


def test_a_ledger_without_the_expected_identity_is_refused_with_the_way_back(store: Store) -> None:
    with pytest.raises(LedgerForgot) as missing:
        Ledger(store).check_identity("0" * 32)
    message = str(missing.value)
    assert "has no identity record" in message
    assert f"{LEDGER_ID_VARIABLE}={'0' * 32}" in message and ADOPT_COMMAND in message
    assert isinstance(missing.value, StoreUnavailable)  # fails closed like any store failure

    other = Ledger(store).init_identity()
    with pytest.raises(LedgerForgot, match=f"is ledger {other}, not {'0' * 32}"):
        Ledger(store).check_identity("0" * 32)
    Ledger(store).check_identity(other)


def test_init_refuses_to_replace_a_forgotten_identity_unless_adopted(store: Store) -> None:
    expected = Ledger(store).init_identity()
    forget_everything(store)
    with pytest.raises(LedgerForgot):
        Ledger(store).init_identity(expected=expected)
    assert Ledger(store).identity() is None  # refusing wrote nothing

    adopted = Ledger(store).init_identity(adopt=True, expected=expected)
    assert adopted != expected
    assert Ledger(store).init_identity(expected=adopted) == adopted
    Ledger(store).check_identity(adopted)


def test_a_claim_on_an_emptied_ledger_writes_nothing(store: Store) -> None:
    ledger = Ledger(store)
    ledger.check_identity(ledger.init_identity())
    assert ledger.claim(key(1), SPEND, 60) == ClaimOutcome.CLAIMED
    forget_everything(store)

    with pytest.raises(LedgerForgot):
        ledger.claim(key(2), SPEND, 60)
    with pytest.raises(LedgerForgot):  # and in a batch, with other steps
        ledger.apply([ledger.skip_step(key(3), "r", "why"), ledger.claim_step(key(4), SPEND, 60)])
    assert list(store.scan("")) == []


def test_a_cached_check_still_lets_no_claim_through_after_a_wipe(store: Store) -> None:
    ledger = Ledger(store)
    expected = ledger.init_identity()
    ledger.check_identity(expected)
    forget_everything(store)
    ledger.check_identity(expected)  # cached: no read within identity_cache_s
    with pytest.raises(LedgerForgot):
        ledger.claim(key(1), SPEND, 60)
    # the failed guard drops the cache: the next check reads, and says so too
    with pytest.raises(LedgerForgot):
        ledger.check_identity(expected)


def test_steps_without_a_claim_do_not_read_the_identity(store: Store) -> None:
    recording = Recording(store)
    ledger = Ledger(recording)
    ledger.check_identity(ledger.init_identity())
    recording.events.clear()
    ledger.apply([ledger.skip_step(key(1), "r", "why"), ledger.note_step(key(2).job, None,
                                                                         "not_failed", "r", "w")])
    assert all(IDENTITY_KEY not in keys for op, keys in recording.events if op == "get")


class Recording:
    """A store that notes every read and commit, in order; `max_writes` as a store may set it,
    and `after_commit` to act on the store right after a commit (a wipe)."""

    def __init__(self, inner: Store, max_writes: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.events: list[tuple[str, list[str]]] = []
        self.after_commit: Any = None
        if max_writes is not None:
            self.max_writes = max_writes

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        self.events.append(("get", list(keys)))
        return self.inner.get(keys)

    def commit(self, writes: Sequence[Write]) -> bool:
        self.events.append(("commit", [w.key for w in writes]))
        done = self.inner.commit(writes)
        if self.after_commit is not None:
            action, self.after_commit = self.after_commit, None
            action()
        return done

    def due(self, now: float, limit: int) -> list[str]:
        return self.inner.due(now, limit)

    def scan(self, prefix: str) -> Iterator[tuple[str, Record]]:
        return self.inner.scan(prefix)

    def close(self) -> None:
        self.inner.close()


def _claim_keys(keys: list[str]) -> list[str]:
    return [k for k in keys if k.startswith(("f/", "j/"))]


@pytest.mark.parametrize("max_writes", [None, 2], ids=["one commit", "split commits"])
def test_identity_is_read_after_every_record_a_claim_decides_on(store: Store,
                                                                max_writes: int | None) -> None:
    recording = Recording(store, max_writes)
    ledger = Ledger(recording, clock=FakeClock())
    ledger.check_identity(ledger.init_identity())
    recording.events.clear()
    results = ledger.apply([ledger.claim_step(key(n), SPEND, 60) for n in range(3)])
    assert results == [ClaimOutcome.CLAIMED] * 3
    reads = [keys for op, keys in recording.events if op == "get"]
    last_claim_read = max(i for i, keys in enumerate(reads) if _claim_keys(keys))
    last_identity_read = max(i for i, keys in enumerate(reads) if IDENTITY_KEY in keys)
    assert last_identity_read >= last_claim_read
    assert reads[last_claim_read][-1] == IDENTITY_KEY  # within one read: after the claims' records
    if max_writes is not None:  # claims committed before the guard's turn are checked after it
        commits = [i for i, (op, keys) in enumerate(recording.events) if op == "commit"]
        identity_reads = [i for i, (op, keys) in enumerate(recording.events)
                          if op == "get" and IDENTITY_KEY in keys]
        assert len(commits) == 3 and identity_reads[-1] > commits[0]


def test_a_wipe_right_after_split_claims_commit_stops_the_flush_before_its_call(store: Store) -> None:
    recording = Recording(store, max_writes=2)
    ledger = Ledger(recording, clock=FakeClock())
    ledger.check_identity(ledger.init_identity())
    recording.after_commit = lambda: forget_everything(store)
    with pytest.raises(LedgerForgot):
        ledger.apply([ledger.claim_step(key(n), SPEND, 60) for n in range(3)])


def test_init_command_prints_the_identity_alone_on_its_last_line_every_time(store: Store) -> None:
    url = _url_of(store)
    out, err = io.StringIO(), io.StringIO()
    assert init_command(url, adopt=False, expected=None, out=out, err=err) == 0
    first = out.getvalue().splitlines()[-1]
    assert first == Ledger(store).identity()
    out2 = io.StringIO()
    assert init_command(url, adopt=False, expected=first, out=out2, err=err) == 0
    assert out2.getvalue().splitlines()[-1] == first and "already initialised" in out2.getvalue()

    forget_everything(store)
    refused_out, refused_err = io.StringIO(), io.StringIO()
    assert init_command(url, adopt=False, expected=first, out=refused_out, err=refused_err) == 1
    assert ADOPT_COMMAND in refused_err.getvalue() and refused_out.getvalue() == ""

    adopted_out = io.StringIO()
    assert init_command(url, adopt=True, expected=first, out=adopted_out, err=io.StringIO()) == 0
    adopted = adopted_out.getvalue().splitlines()[-1]
    assert adopted not in (first, "") and adopted == Ledger(store).identity()
    assert "adopted" in adopted_out.getvalue()


def _url_of(store: Store) -> str:
    from handler.ledger.dynamodb import DynamoStore
    from handler.ledger.redis import RedisStore

    if isinstance(store, RedisStore):
        return f"{store.name}?prefix={store.prefix}"
    assert isinstance(store, DynamoStore) or store.name.startswith("sqlite:")
    return store.name


def test_stores_whose_writes_are_durable_when_acknowledged_wait_for_nothing(store: Store) -> None:
    if "redis" in store.name:
        pytest.skip("Redis waits for its replicas: tests/ledger/test_durable_claims.py")
    assert not hasattr(store, "wait_durable")
    Ledger(store).wait_durable(0.001)
