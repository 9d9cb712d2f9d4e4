"""The emulator (one listing order per test) crowded with retained FAILED jobs, the function wired
to it through the real SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator import Emulator

from ..conftest import SECRET_ID, SECRET_KEY
from .scenario import OURS, RETAINED, SPEEDUP


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    order = getattr(request, "param", "newest-first")
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=SPEEDUP, run_s=1.0,
                  listing_order=order, seed=7) as e:
        yield e


@pytest.fixture
def crowded(wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("AUTORETRY_POLICY", OURS)
    wired.add_failed_jobs(RETAINED, "retained")
    return wired
