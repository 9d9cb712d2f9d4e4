"""The outbox on the DynamoDB store (moto, in-process): the same once-per-failure promise, and the
index's shard records within DynamoDB's item size."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.receiver import Receiver
from handler.ledger import Store
from handler.notify import Notifier, Outbox, WeComChannel
from handler.notify.outbox import DEFAULT_SHARDS, shard_key
from handler.observe import Observer

from ..ledger.conftest import STORES
from .conftest import FakeClock, failure, give_up


@pytest.fixture
def dynamo(tmp_path: Path) -> Iterator[Store]:
    with STORES["dynamodb"](tmp_path) as s:  # the ledger tests' moto table
        yield s


def test_each_give_up_is_sent_once_on_dynamodb_with_the_channel_down_and_back(
    dynamo: Store, receiver: Receiver, clock: FakeClock
) -> None:
    outbox = Outbox(dynamo, clock=clock)
    n = Notifier(outbox, [WeComChannel(receiver.url("wecom"))], Observer(quiet=True), rng=random.Random(2))
    keys = [failure(i) for i in range(6)]
    assert all(outbox.add(k, give_up(k)) for k in keys)
    assert not any(outbox.add(k, give_up(k)) for k in keys)
    receiver.down()
    assert len(n.deliver(30).rescheduled) == 6
    receiver.up()
    clock.advance(3600)
    assert sorted(n.deliver(30).sent) == sorted(str(k) for k in keys)
    clock.advance(3600)
    assert n.deliver(30).sent == []
    bodies = [r.body.decode() for r in receiver.accepted("wecom")]
    assert sorted(next(k.job_id for k in keys if k.job_id in b) for b in bodies) == [k.job_id for k in keys]


def test_an_index_shard_for_a_sixteenth_of_ten_thousand_pending_messages_fits_a_dynamodb_item(
    dynamo: Store, clock: FakeClock
) -> None:
    outbox = Outbox(dynamo, clock=clock, shards=1)
    for i in range(100):
        key = failure(i)
        assert outbox.add(key, give_up(key))
    (shard,) = dynamo.get([shard_key(0)]).values()
    assert len(shard.value["due"]) == 100 == outbox.pending()
    per_entry = len(json.dumps(shard.value, separators=(",", ":")).encode()) / 100
    # 10,000 pending over 16 shards is 625 a shard: a quarter of DynamoDB's 400 KB item limit at most.
    assert per_entry * (10_000 / DEFAULT_SHARDS) < 100_000, per_entry
