"""One contract suite for every store: each backend registers a factory in STORES."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.ledger import Store
from handler.ledger.sqlite import SqliteStore

StoreFactory = Callable[[Path], Store]


def _sqlite(tmp: Path) -> Store:
    return SqliteStore(str(tmp / f"ledger-{uuid.uuid4().hex[:6]}.db"))


# name -> factory(tmp_path) returning a fresh, empty store
STORES: dict[str, StoreFactory] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = STORES[request.param](tmp_path)
    yield s
    s.close()


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
