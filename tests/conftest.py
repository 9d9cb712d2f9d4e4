"""Shared fixtures: a function environment on a fresh SQLite ledger; the Batch API emulator and the
function wired to it (the real SDK, signed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator
from handler import app


@pytest.fixture
def function_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the entry points at a new SQLite ledger; local mode (no token needed)."""
    db = tmp_path / "ledger.db"
    for name in ("AUTORETRY_POLICY", "AUTORETRY_AUTH_TOKEN", "AUTORETRY_HMAC_SECRET",
                 "AUTORETRY_DRY_RUN", "AUTORETRY_BATCH_ENDPOINT", "TENCENTCLOUD_SECRETID",
                 "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTORETRY_STORE", f"sqlite:///{db}")
    monkeypatch.setenv("AUTORETRY_LOCAL", "true")
    app.reset_runtime()
    yield db
    app.reset_runtime()


# How long a local instance waits for its continuations to end: one drains for 55 s at most
# (handler.app.FLUSH_BUDGET_S), and may start another.
CONTINUATION_TIMEOUT_S = 120.0


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A test's function instance ends as one in the cloud would: the continuations it started run
    to their end. A local continuation is a thread of this process, and would otherwise outlive
    the test, cut short when its fixtures close the store and stop the emulator, or draining the
    next test's ledger. This runs before any fixture is torn down."""
    from handler.continuation import settle

    _, running = settle(CONTINUATION_TIMEOUT_S)
    assert running == 0, \
        f"{running} continuations still running {CONTINUATION_TIMEOUT_S:g} s after the test"


def ledger_rows(db: Path) -> int:
    """How many records the SQLite ledger at `db` (function_env's) holds; 0 before it exists."""
    import sqlite3
    if not db.exists():
        return 0
    return int(sqlite3.connect(db).execute("SELECT COUNT(*) FROM records").fetchone()[0])


SECRET_ID, SECRET_KEY = "AKIDTESTE2E", "e2e-secret-key"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Time-scaled: rate limits x20 and job run times ÷20, so the tests run fast.
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0) as e:
        yield e


@pytest.fixture
def wired(emu: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The function's environment pointing at the emulator (whichever `emu` the module uses), with
    the emulator's credentials and time scale."""
    secret_id, secret_key = next(iter(emu.secrets.items()))
    monkeypatch.setenv("AUTORETRY_BATCH_ENDPOINT", emu.endpoint)
    monkeypatch.setenv("AUTORETRY_BATCH_PROTOCOL", "http")
    monkeypatch.setenv("AUTORETRY_API_SPEEDUP", f"{emu.speedup:g}")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", secret_id)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", secret_key)
    app.reset_runtime()
    return emu
