"""End-to-end: the real SDK, signed, against the emulator; the function on a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator
from handler import app

SECRET_ID, SECRET_KEY = "AKIDTESTE2E", "e2e-secret-key"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Time-scaled: rate limits x20 and job run times ÷20, so the tests run fast.
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0) as e:
        yield e


@pytest.fixture
def wired(emu: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The function's environment pointing at the emulator, with matching credentials."""
    monkeypatch.setenv("AUTORETRY_BATCH_ENDPOINT", emu.endpoint)
    monkeypatch.setenv("AUTORETRY_BATCH_PROTOCOL", "http")
    monkeypatch.setenv("AUTORETRY_API_SPEEDUP", "20")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    app.reset_runtime()
    return emu
