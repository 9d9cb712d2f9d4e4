"""A store whose due index lags its table, as DynamoDB's global secondary index may: the index shows
the queue as it was `lag_s` ago, so a new entry is unseen for that long, and a deleted or leased
entry is still listed as due. Records themselves (`get`, `scan`, `commit`) are the store's own, read
consistently. Wraps any store, in one process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from handler.ledger import Record, Store, Write


class LaggingIndex:
    def __init__(self, store: Store, lag_s: float, clock: Callable[[], float] = time.time) -> None:
        self.inner, self.lag_s, self.clock = store, lag_s, clock
        self.name = f"{store.name} (index {lag_s:g} s behind)"
        self._lock = threading.Lock()
        # Each queue key's due time after each committed write (None: deleted), in commit order.
        self._history: dict[str, list[tuple[float, float | None]]] = {}

    def __getattr__(self, name: str) -> Any:  # max_writes, wait_durable: the store's own
        return getattr(self.inner, name)

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        return self.inner.get(keys)

    def scan(self, prefix: str) -> Iterator[tuple[str, Record]]:
        return self.inner.scan(prefix)

    def close(self) -> None:
        self.inner.close()

    def commit(self, writes: Sequence[Write]) -> bool:
        with self._lock:  # the order of the history is the order of the commits
            if not self.inner.commit(writes):
                return False
            at = self.clock()
            for w in writes:
                if w.key.startswith("q/"):
                    self._history.setdefault(w.key, []).append(
                        (at, w.due_at if w.value is not None else None))
            return True

    def due(self, now: float, limit: int) -> list[str]:
        """The keys that were due by `now` in the table as it stood `lag_s` ago."""
        seen = self.clock() - self.lag_s
        listed: list[tuple[float, str]] = []
        with self._lock:
            for key, history in self._history.items():
                state = None
                for at, due_at in history:
                    if at > seen:
                        break
                    state = due_at
                if state is not None and state <= now:
                    listed.append((state, key))
        return [key for _, key in sorted(listed)[:limit]]
