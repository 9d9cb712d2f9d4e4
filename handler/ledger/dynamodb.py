"""DynamoDB store: one item per record, conditional writes, a sparse index for the due queue.

Table `pk` (S, hash key); item attributes `v` (N, version), `val` (S, the value as JSON),
`expires_at` (N, epoch seconds: the table's TTL attribute), and on queue records only `gsi_pk`
(S, always "due") with `due_at` (N), the keys of the sparse global secondary index `due-index`.
A commit of several writes is one TransactWriteItems; a single write is one conditional
PutItem/DeleteItem (half the cost, same atomicity).

DynamoDB deletes expired items up to a few days late. `get` and `scan` return them with their
`expires_at` like every store does, so the ledger treats them as absent and still knows the
version it must overwrite (a write expecting 0 fails while the expired item lingers).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from handler.ledger.store import Record, StoreUnavailable, Write

DUE_INDEX = "due-index"
DUE_PARTITION = "due"
MAX_TRANSACTION_WRITES = 100  # DynamoDB's own limit: a commit is never split
_BATCH_GET = 100
_CONFLICTS = {"ConditionalCheckFailedException", "TransactionConflictException"}
_CANCEL_CONFLICTS = {"None", "ConditionalCheckFailed", "TransactionConflict"}
_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    # boto3's standard retries cover throttling and dropped connections; three tries still fail
    # closed within a few seconds when the endpoint is gone.
    retries={"mode": "standard", "max_attempts": 3},
)


def _client(region: str | None) -> Any:
    # A session per store: boto3's default session is not safe to share between threads.
    # AWS_ENDPOINT_URL_DYNAMODB (or AWS_ENDPOINT_URL) is honoured by botocore itself.
    return boto3.session.Session().client("dynamodb", region_name=region, config=_CLIENT_CONFIG)


def _number(value: float) -> str:
    return repr(float(value))


class DynamoStore:
    max_writes = MAX_TRANSACTION_WRITES  # the ledger splits a batch of steps to fit

    def __init__(self, url: str, client: Any = None) -> None:
        parsed = urlparse(url)
        table = (parsed.netloc + parsed.path).strip("/")
        if parsed.scheme != "dynamodb" or not table:
            raise ValueError("AUTORETRY_STORE: a DynamoDB URL names its table, e.g. dynamodb://autoretry")
        region = parse_qs(parsed.query).get("region", [None])[0]
        try:
            self._db = client if client is not None else _client(region)
        except NoRegionError:
            raise ValueError(
                f"dynamodb://{table}: no AWS region; set AWS_REGION or add ?region=..."
            ) from None
        self.table = table
        self.region = str(self._db.meta.region_name)
        self.name = f"dynamodb://{table}?region={self.region}"

    def _unavailable(self, e: Exception) -> StoreUnavailable:
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            detail = f"{err.get('Code', 'error')}: {err.get('Message', '')}"
        else:
            detail = f"{type(e).__name__}: {e}"
        return StoreUnavailable(f"{self.name}: {detail}")

    # ---- reads ---------------------------------------------------------------------------------

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        try:
            if len(unique) == 1:
                item = self._db.get_item(
                    TableName=self.table, Key={"pk": {"S": unique[0]}}, ConsistentRead=True,
                    ProjectionExpression="pk, v, val, expires_at",
                ).get("Item")
                items = [item] if item else []
            else:
                items = []
                for start in range(0, len(unique), _BATCH_GET):
                    items += self._batch_get(unique[start:start + _BATCH_GET])
        except (ClientError, BotoCoreError) as e:
            raise self._unavailable(e) from None
        return {item["pk"]["S"]: _record(item) for item in items}

    def _batch_get(self, keys: list[str]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {self.table: {
            "Keys": [{"pk": {"S": k}} for k in keys], "ConsistentRead": True,
            "ProjectionExpression": "pk, v, val, expires_at",
        }}
        items: list[dict[str, Any]] = []
        for attempt in range(8):
            got = self._db.batch_get_item(RequestItems=request)
            items += got.get("Responses", {}).get(self.table, [])
            request = got.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(min(0.05 * 2 ** attempt, 1.0))  # throttled: AWS asks for a backoff
        raise StoreUnavailable(f"{self.name}: BatchGetItem left keys unprocessed after 8 tries")

    def due(self, now: float, limit: int) -> list[str]:
        if limit <= 0:
            return []
        try:
            got = self._db.query(
                TableName=self.table, IndexName=DUE_INDEX,
                KeyConditionExpression="gsi_pk = :p AND due_at <= :now",
                ExpressionAttributeValues={":p": {"S": DUE_PARTITION}, ":now": {"N": _number(now)}},
                ScanIndexForward=True, Limit=limit,
            )
        except (ClientError, BotoCoreError) as e:
            raise self._unavailable(e) from None
        # The index is eventually consistent: the ledger re-reads each entry before using it.
        return [item["pk"]["S"] for item in got.get("Items", [])]

    def scan(self, prefix: str) -> Iterator[tuple[str, Record]]:
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :p)",
            "ExpressionAttributeValues": {":p": {"S": prefix}},
            "ProjectionExpression": "pk, v, val, expires_at",
        }
        try:
            while True:
                page = self._db.scan(**request)
                found += page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as e:
            raise self._unavailable(e) from None
        for item in sorted(found, key=lambda i: str(i["pk"]["S"])):
            yield item["pk"]["S"], _record(item)

    # ---- the one write primitive ---------------------------------------------------------------

    def commit(self, writes: Sequence[Write]) -> bool:
        if not writes:
            return True
        if len(writes) > MAX_TRANSACTION_WRITES:
            raise ValueError(f"{self.name}: a commit holds at most {MAX_TRANSACTION_WRITES} writes "
                             f"(DynamoDB transactions are never split); got {len(writes)}")
        if len({w.key for w in writes}) < len(writes):
            raise ValueError(f"{self.name}: one write per record in a commit")
        ops = [_operation(self.table, w) for w in writes]
        try:
            if len(ops) == 1:
                kind, op = next(iter(ops[0].items()))
                if kind == "Put":
                    self._db.put_item(**op)
                else:
                    self._db.delete_item(**op)
            else:
                # The token makes botocore's own retry of a transaction that did commit a no-op
                # success, instead of a false conflict.
                self._db.transact_write_items(TransactItems=ops, ClientRequestToken=uuid.uuid4().hex)
        except ClientError as e:
            if _is_conflict(e):
                return False
            raise self._unavailable(e) from None
        except BotoCoreError as e:
            raise self._unavailable(e) from None
        return True

    def close(self) -> None:
        self._db.close()


def _operation(table: str, w: Write) -> dict[str, Any]:
    if w.expect == 0:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
    else:
        condition = {"ConditionExpression": "v = :expect",
                     "ExpressionAttributeValues": {":expect": {"N": str(w.expect)}}}
    if w.value is None:
        return {"Delete": {"TableName": table, "Key": {"pk": {"S": w.key}}, **condition}}
    item: dict[str, Any] = {
        "pk": {"S": w.key},
        "v": {"N": str(w.expect + 1)},
        "val": {"S": json.dumps(w.value, separators=(",", ":"))},
    }
    if w.expires_at is not None:
        # TTL wants whole epoch seconds; rounding up never drops a record early.
        item["expires_at"] = {"N": str(math.ceil(w.expires_at))}
    if w.due_at is not None:
        item["gsi_pk"] = {"S": DUE_PARTITION}
        item["due_at"] = {"N": _number(w.due_at)}
    return {"Put": {"TableName": table, "Item": item, **condition}}


def _is_conflict(e: ClientError) -> bool:
    code = e.response.get("Error", {}).get("Code", "")
    if code in _CONFLICTS:
        return True
    if code == "TransactionCanceledException":
        reasons = [str(r.get("Code", "None")) for r in e.response.get("CancellationReasons", [])]
        # Only version mismatches and concurrent transactions are conflicts; a throttled or
        # invalid item is the store failing, and must not look like someone else's write.
        return bool(reasons) and all(r in _CANCEL_CONFLICTS for r in reasons)
    return False


def _record(item: dict[str, Any]) -> Record:
    exp = item.get("expires_at")
    return Record(json.loads(item["val"]["S"]), int(item["v"]["N"]),
                  float(exp["N"]) if exp is not None else None)


def create_table(table_name: str, client: Any = None, region: str | None = None) -> None:
    """Create the ledger's table (on-demand billing, TTL on `expires_at`, the sparse `due-index`)
    and wait until it is active. An existing table is left as it is."""
    db = client if client is not None else _client(region or os.environ.get("AWS_REGION"))
    try:
        db.create_table(
            TableName=table_name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "gsi_pk", "AttributeType": "S"},
                {"AttributeName": "due_at", "AttributeType": "N"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{
                "IndexName": DUE_INDEX,
                "KeySchema": [{"AttributeName": "gsi_pk", "KeyType": "HASH"},
                              {"AttributeName": "due_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }],
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        return
    db.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    db.update_time_to_live(TableName=table_name,
                           TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
