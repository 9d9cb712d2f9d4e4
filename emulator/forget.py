"""Make the function's ledger forget, on command: what a Redis failover that lost its latest writes,
or a restart without persistence, does to it. Tests call `drop_ledger(store_url)` mid-run.

It reads the store URL the way the function does (`AUTORETRY_STORE`) but imports nothing from the
function, so the emulator stays a stand-in for the outside world:
- `redis://[user:password@]host:port/db[?prefix=autoretry:]`: deletes every key under the prefix
  (the ledger's records, its due index, its identity record), and nothing else;
- `sqlite:///relative/path` or `sqlite:////absolute/path`: empties every table of the file.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import parse_qs, unquote, urlparse

REDIS_PREFIX = "autoretry:"  # the ledger's default key prefix (handler/ledger/redis.py)


def drop_ledger(store_url: str) -> int:
    """Empty the ledger at `store_url`; return how many keys or rows were dropped."""
    scheme = store_url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return _drop_redis(store_url)
    if scheme == "sqlite":
        return _drop_sqlite(store_url)
    raise ValueError(f"cannot drop a {scheme!r} ledger; use a redis:// or sqlite:/// URL")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _drop_redis(url: str) -> int:
    import redis

    parsed = urlparse(url)
    path = parsed.path.strip("/")
    # keep_blank_values: `?prefix=` must reach the empty-prefix refusal, not fall back to the default
    prefix = parse_qs(parsed.query, keep_blank_values=True).get("prefix", [REDIS_PREFIX])[0]
    if not prefix:
        raise ValueError("refusing to drop a Redis ledger with an empty prefix: it would empty the database")
    client = redis.Redis(host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379,
                         db=int(path or 0), ssl=parsed.scheme == "rediss",
                         username=unquote(parsed.username) if parsed.username else None,
                         password=unquote(parsed.password) if parsed.password else None,
                         socket_connect_timeout=5, socket_timeout=5)
    try:
        dropped = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                dropped += int(client.delete(*batch))
                batch = []
        if batch:
            dropped += int(client.delete(*batch))
        return dropped
    finally:
        client.close()


def _drop_sqlite(url: str) -> int:
    path = url[len("sqlite://"):]
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ValueError("a sqlite URL needs a path, e.g. sqlite:///var/autoretry.db")
    if not os.path.exists(path):
        # connect() would create an empty file and "drop" nothing: the caller named the wrong file.
        raise FileNotFoundError(f"no ledger file at {path}")
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        dropped = 0
        conn.execute("BEGIN IMMEDIATE")
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            dropped += conn.execute(f"DELETE FROM {quoted}").rowcount  # table names from the schema
        conn.execute("COMMIT")
        return dropped
    finally:
        conn.close()
