"""Reliability tests: a time-scaled emulator, real function processes, Redis servers of our own.

The machine's Redis on 6379 is never touched: a test that needs a server to stop starts its own
(`RedisServer`, from bench/soak.py) on a free port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator
from handler import app

SECRET_ID, SECRET_KEY = "AKIDRELIABILITY", "reliability-secret-key"
SPEEDUP = 50.0

# Set for the module-scoped fixtures (hypothesis examples share them); restored afterwards.
CLEARED = ("AUTORETRY_POLICY", "AUTORETRY_AUTH_TOKEN", "AUTORETRY_HMAC_SECRET", "AUTORETRY_DRY_RUN",
           "AUTORETRY_BATCH_ENDPOINT", "AUTORETRY_STORE", "AUTORETRY_LOCAL", "AUTORETRY_API_SPEEDUP",
           "TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN",
           "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SESSION_TOKEN")


class Env:
    """os.environ changes undone at close (monkeypatch is function-scoped)."""

    def __init__(self) -> None:
        self._saved = {k: os.environ.get(k) for k in CLEARED}
        for k in CLEARED:
            os.environ.pop(k, None)

    def set(self, **values: str) -> None:
        for k, v in values.items():
            self._saved.setdefault(k, os.environ.get(k))
            os.environ[k] = v

    def close(self) -> None:
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def module_emu() -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=SPEEDUP) as e:
        yield e


@pytest.fixture(scope="module")
def module_function(module_emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The function in this process, on a fresh SQLite ledger, wired to the module's emulator."""
    db: Path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    env = Env()
    env.set(AUTORETRY_STORE=f"sqlite:///{db}", AUTORETRY_BATCH_ENDPOINT=module_emu.endpoint,
            AUTORETRY_BATCH_PROTOCOL="http", AUTORETRY_API_SPEEDUP=f"{SPEEDUP:g}",
            AUTORETRY_LOCAL="false", TENCENTCLOUD_SECRET_ID=SECRET_ID, TENCENTCLOUD_SECRET_KEY=SECRET_KEY)
    app.reset_runtime()
    try:
        yield env
    finally:
        app.reset_runtime()
        env.close()
