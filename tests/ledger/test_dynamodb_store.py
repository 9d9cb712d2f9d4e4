"""What the DynamoDB store adds to the contract: the table, its sparse index, TTL lag,
transaction limits and how cancellations are read."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from handler.ledger import StoreUnavailable, Write, open_store
from handler.ledger.dynamodb import DUE_INDEX, DynamoStore, create_table

from .servers import DUMMY_AWS_ENV, SerializedMotoServer


@pytest.fixture
def aws() -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    with mock.patch.dict(os.environ, {**env, **DUMMY_AWS_ENV}, clear=True), mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def table(aws: Any) -> str:
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    create_table(name, client=aws)
    return name


def test_create_table_is_on_demand_with_ttl_and_a_keys_only_due_index(aws: Any) -> None:
    create_table("autoretry", client=aws)
    create_table("autoretry", client=aws)  # a second call leaves the table as it is
    desc = aws.describe_table(TableName="autoretry")["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    [gsi] = desc["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == DUE_INDEX
    assert gsi["KeySchema"] == [{"AttributeName": "gsi_pk", "KeyType": "HASH"},
                                {"AttributeName": "due_at", "KeyType": "RANGE"}]
    assert gsi["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    ttl = aws.describe_time_to_live(TableName="autoretry")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_only_queue_records_enter_the_due_index(aws: Any, table: str) -> None:
    store = DynamoStore(f"dynamodb://{table}?region=us-east-1")
    store.commit([Write("q/r/job", {"n": 1}, 0, due_at=12.5),
                  Write("f/r/job/t", {"n": 2}, 0, expires_at=2_000_000_000.4)])
    queue = aws.get_item(TableName=table, Key={"pk": {"S": "q/r/job"}})["Item"]
    failure = aws.get_item(TableName=table, Key={"pk": {"S": "f/r/job/t"}})["Item"]
    assert (queue["gsi_pk"], queue["due_at"]) == ({"S": "due"}, {"N": "12.5"})
    assert "gsi_pk" not in failure and "due_at" not in failure
    assert failure["expires_at"] == {"N": "2000000001"}  # whole seconds for TTL, rounded up
    assert failure["v"] == {"N": "1"}


def test_a_lingering_expired_item_blocks_a_create_until_its_version_is_used(table: str) -> None:
    # DynamoDB's TTL deletes late: the item is still there, so "must not exist" is false.
    store = DynamoStore(f"dynamodb://{table}?region=us-east-1")
    store.commit([Write("f/1", {"s": "old"}, 0, expires_at=time.time() - 3600)])
    rec = store.get(["f/1"])["f/1"]
    assert not rec.live(time.time())
    assert not store.commit([Write("f/1", {"s": "new"}, 0)])
    assert store.commit([Write("f/1", {"s": "new"}, rec.version)])


def test_more_than_a_hundred_writes_are_refused_not_split(table: str) -> None:
    store = DynamoStore(f"dynamodb://{table}?region=us-east-1")
    with pytest.raises(ValueError, match="at most 100"):
        store.commit([Write(f"x/{i}", {}, 0) for i in range(101)])
    assert list(store.scan("x/")) == []


def test_region_comes_from_the_url_or_the_environment(aws: Any) -> None:
    assert open_store("dynamodb://t?region=ap-singapore-1").name == "dynamodb://t?region=ap-singapore-1"
    assert open_store("dynamodb://t").name == "dynamodb://t?region=us-east-1"  # AWS_REGION


class _Cancelling:
    """A client whose every write is cancelled with the given reasons."""

    class meta:  # mirrors botocore client.meta
        region_name = "us-east-1"

    def __init__(self, *codes: str) -> None:
        self.codes = codes

    def transact_write_items(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                           "CancellationReasons": [{"Code": c} for c in self.codes]},
                          "TransactWriteItems")


TWO_WRITES = [Write("a", {}, 0), Write("b", {}, 3)]


def test_a_cancelled_transaction_is_a_conflict_when_versions_moved() -> None:
    assert not DynamoStore("dynamodb://t", client=_Cancelling("None", "ConditionalCheckFailed")).commit(
        TWO_WRITES)
    assert not DynamoStore("dynamodb://t", client=_Cancelling("TransactionConflict", "None")).commit(
        TWO_WRITES)


def test_a_throttled_transaction_is_the_store_failing_not_a_conflict() -> None:
    store = DynamoStore("dynamodb://autoretry", client=_Cancelling("None", "ThrottlingError"))
    with pytest.raises(StoreUnavailable, match=r"dynamodb://autoretry\?region=us-east-1.*Transaction"):
        store.commit(TWO_WRITES)


def test_the_endpoint_comes_from_aws_endpoint_url_dynamodb(
        moto_server: SerializedMotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    table = f"ledger-{uuid.uuid4().hex[:8]}"
    create_table(table)
    store = open_store(f"dynamodb://{table}")
    assert store.commit([Write("x/1", {"via": "env"}, 0)])
    direct = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server.endpoint)
    item = direct.get_item(TableName=table, Key={"pk": {"S": "x/1"}})["Item"]
    assert item["val"] == {"S": '{"via":"env"}'}
    store.close()
