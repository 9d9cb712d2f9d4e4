"""Shared fixtures: a function environment on a fresh SQLite ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
