"""SQLite store: the embedded default. Safe for several processes sharing one file."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from handler.ledger.store import Record, StoreUnavailable, Write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL,
    due_at REAL
);
CREATE INDEX IF NOT EXISTS records_due ON records (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
"""


def _until_unlocked(step: Callable[[], object], patience_s: float = 10.0) -> None:
    end = time.monotonic() + patience_s
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > end:
                raise
            time.sleep(0.01)


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.name = f"sqlite:///{path}"
        self.path = path
        self._local = threading.local()
        self._last_cleanup = 0.0
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            _until_unlocked(lambda: self._conn().executescript(_SCHEMA))
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailable(f"{self.name}: {e}") from None

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            # Switching a new file to WAL takes an exclusive lock that SQLite's busy handler does
            # not wait for: processes opening the file together get "database is locked" at once.
            _until_unlocked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        try:
            rows = self._conn().execute(
                f"SELECT key, value, version, expires_at FROM records WHERE key IN ({marks})",
                list(keys),
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.name}: {e}") from None
        return {k: Record(json.loads(v), ver, exp) for k, v, ver, exp in rows}

    def commit(self, writes: Sequence[Write]) -> bool:
        conn = self._conn()
        try:
            # IMMEDIATE takes the write lock up front, so the version check and the writes are one
            # atomic step for every process sharing the file.
            conn.execute("BEGIN IMMEDIATE")
            try:
                for w in writes:
                    row = conn.execute(
                        "SELECT version FROM records WHERE key = ?", (w.key,)
                    ).fetchone()
                    if (row[0] if row else 0) != w.expect:
                        conn.execute("ROLLBACK")
                        return False
                for w in writes:
                    if w.value is None:
                        conn.execute("DELETE FROM records WHERE key = ?", (w.key,))
                    else:
                        conn.execute(
                            "INSERT OR REPLACE INTO records (key, value, version, expires_at, due_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (w.key, json.dumps(w.value), w.expect + 1, w.expires_at, w.due_at),
                        )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.name}: {e}") from None
        self._maybe_cleanup()
        return True

    def due(self, now: float, limit: int) -> list[str]:
        try:
            rows = self._conn().execute(
                "SELECT key FROM records WHERE due_at IS NOT NULL AND due_at <= ?"
                " ORDER BY due_at LIMIT ?",
                (now, limit),
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.name}: {e}") from None
        return [r[0] for r in rows]

    def scan(self, prefix: str) -> Iterator[tuple[str, Record]]:
        try:
            rows = self._conn().execute(
                "SELECT key, value, version, expires_at FROM records"
                " WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.name}: {e}") from None
        for k, v, ver, exp in rows:
            yield k, Record(json.loads(v), ver, exp)

    def _maybe_cleanup(self) -> None:
        # SQLite has no TTL: drop expired records now and then, off the hot path's common case.
        now = time.time()
        if now - self._last_cleanup < 60:
            return
        self._last_cleanup = now
        with contextlib.suppress(sqlite3.Error):  # best effort; tried again in a minute
            self._conn().execute(
                "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
            )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
