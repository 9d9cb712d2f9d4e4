"""Empty a ledger behind its back, as a store that forgot does (a Redis restarted without
persistence, a failover to a replica that never got the writes, a table recreated)."""

from __future__ import annotations

from typing import Any

from handler.ledger import Store


def forget_everything(store: Store) -> None:
    """Delete every record of the ledger on `store`, through the backend's own client."""
    from handler.ledger.dynamodb import DynamoStore
    from handler.ledger.redis import RedisStore
    from handler.ledger.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        import sqlite3

        conn = sqlite3.connect(store.path, timeout=30)
        with conn:
            conn.execute("DELETE FROM records")
        conn.close()
    elif isinstance(store, RedisStore):
        client: Any = store._client
        keys = list(client.scan_iter(match=store.prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    elif isinstance(store, DynamoStore):
        db: Any = store._db
        for page in db.get_paginator("scan").paginate(TableName=store.table,
                                                      ProjectionExpression="pk"):
            for item in page.get("Items", []):
                db.delete_item(TableName=store.table, Key={"pk": item["pk"]})
    else:
        raise TypeError(f"no way to empty {type(store).__name__}")
    remaining = list(store.scan(""))
    assert remaining == [], f"{store.name} still holds {len(remaining)} records"
