"""The budget survives the ledger: a ledger emptied mid-run (a failover that lost its writes) never
hands a job a fresh budget while the job's own tags remember what it spent. Through `main_handler`,
with duplicate notices, counted at the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator, Outcome
from emulator.forget import drop_ledger
from handler import app
from handler.tags import TAG_KEY

from ..conftest import SECRET_ID, SECRET_KEY
from ..pushes import failure_push


@pytest.fixture(params=[True, False], ids=["tags-writable", "tags-refused"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=20.0,
                  tags_writable=request.param) as e:
        yield e


def deliver_failure(emu: Emulator, job: str, copies: int = 3) -> None:
    for _ in range(copies):
        assert app.main_handler(failure_push(emu, job), {"time_limit_in_ms": 20000})[
            "statusCode"] == 200


def test_a_ledger_emptied_mid_run_never_retries_a_job_past_its_cap_while_its_tags_remember(
        wired: Emulator, function_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORETRY_ACCOUNT_UIN", wired.uin)
    app.reset_runtime()
    job = wired.add_failed_job(name="always-fails", script=[Outcome.fail("bug", 1)])
    for retries in (1, 2):
        deliver_failure(wired, job)
        wired.wait_job(job, 20, state="FAILED", retries=retries)
    if wired.behaviour.tags_writable:
        assert wired.fleet.jobs[job].tags.get(TAG_KEY) == "2"
    drop_ledger(f"sqlite:///{function_env}")  # the ledger forgets everything
    for _ in range(3):  # the next failures, each with duplicates
        deliver_failure(wired, job)
        time.sleep(0.3)  # a retried run fails again within ~0.1 s at this speed
    if wired.behaviour.tags_writable:
        assert wired.retry_counts()[job] == 3  # the cap of 3 held across the wipe
    else:
        # No memory but the ledger's: without an identity to check (AUTORETRY_LEDGER_ID, see
        # docs/ledger.md) the emptied ledger starts the job's count again.
        assert wired.retry_counts()[job] > 3
