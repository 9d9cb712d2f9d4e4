"""A claim held past its call — an unclear RetryJobs answer, a flusher that died — is settled by a
re-read: retried once if the call never landed, never twice if it did. Also on the job's last
allowed attempt, where the claim itself has already spent the budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from emulator import Emulator, Faults, Outcome
from handler import app
from handler.jobs import FailureKey, JobRef
from handler.observe import Observer
from handler.policy import Action, RetryDecision
from handler.retrier import Deadline

from .conftest import SECRET_ID, SECRET_KEY

SPEEDUP = 20.0
REGION = "ap-guangzhou"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    faults = Faults(rate=0.0, actions=("RetryJobs",))
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=SPEEDUP, faults=faults) as e:
        yield e


def flush_for(seconds: float, until: Callable[[], bool] = lambda: False) -> None:
    """A flusher drains as time passes (what the function does on its own), for `seconds` or
    until `until()` holds."""
    retrier = app.runtime().retrier(Observer(quiet=True))
    end = time.time() + seconds
    while time.time() < end and not until():
        retrier.drain(Deadline.after(10), linger_s=0.2)
        time.sleep(0.02)


def retry_call(emu: Emulator, job: str, n: int) -> None:
    """Flush until the n-th RetryJobs call naming `job` was answered (or faulted)."""
    def made() -> bool:
        return sum(1 for c in list(emu.calls) if c["action"] == "RetryJobs"
                   and (c["params"] is None or job in c["params"].get("JobIds", []))) >= n
    flush_for(5.0, made)
    assert made(), f"no RetryJobs call #{n} for {job}"


def stubborn_with_two_retries_spent(emu: Emulator) -> str:
    """A job that fails every run, retried twice through the function: one attempt of 3 left."""
    job = emu.add_failed_job("stubborn", [Outcome.fail("exit 1", 1)])
    for n in (1, 2):
        notify(emu, job)
        retry_call(emu, job, n)
        emu.wait_job(job, state="FAILED", retries=n)
    return job


def notify(emu: Emulator, job: str) -> None:
    app.runtime().retrier(Observer(quiet=True)).enqueue(JobRef(REGION, job), "JOB_FAILED", {})


def recheck_s() -> float:
    return app.runtime().settings.recheck_s


def settle_s() -> float:
    s = app.runtime().settings
    return s.lease_s + s.recheck_s + 1.0


@pytest.mark.parametrize("fault", ["reset", "internal_error"])
def test_an_unclear_answer_on_the_last_allowed_attempt_that_never_landed_is_retried_once(
    wired: Emulator, fault: str
) -> None:
    wired.faults.timeout_s = 1.5
    job = stubborn_with_two_retries_spent(wired)
    # The third and last allowed retry: the call is lost on the way in, nothing applied.
    wired.faults.kinds, wired.faults.rate = (fault,), 1.0
    notify(wired, job)
    retry_call(wired, job, 3)
    wired.faults.rate = 0.0
    assert wired.job(job)["retries"] == 2 and wired.faults.injected == {fault: 1}
    flush_for(settle_s(), until=lambda: wired.retry_counts()[job] == 3)
    assert wired.retry_counts()[job] == 3  # the held claim was taken over, not skipped as over the cap
    wired.wait_job(job, state="FAILED", retries=3)
    notify(wired, job)
    flush_for(recheck_s() + 1.0)
    assert wired.retry_counts()[job] == 3  # and the cap holds after it


def test_an_unclear_answer_on_the_last_attempt_that_did_land_is_not_repeated(wired: Emulator) -> None:
    job = stubborn_with_two_retries_spent(wired)
    wired.faults.kinds, wired.faults.rate = ("lost_answer",), 1.0
    notify(wired, job)
    retry_call(wired, job, 3)
    wired.faults.rate = 0.0
    assert wired.retry_counts()[job] == 3
    wired.wait_job(job, state="FAILED", retries=3)
    notify(wired, job)
    flush_for(recheck_s() + 1.0)
    assert wired.retry_counts()[job] == 3


def test_a_flusher_that_died_holding_the_last_attempt_is_taken_over_once(wired: Emulator) -> None:
    job = stubborn_with_two_retries_spent(wired)
    # Another instance claimed the third attempt and died before calling RetryJobs.
    rt = app.runtime()
    key = FailureKey(REGION, job, wired.job(job)["end_time"])
    dead = type(rt.ledger)(rt.ledger.store, owner="dead-instance")
    assert str(dead.claim(key, RetryDecision(Action.RETRY, "default", "retry 3 of 3", cap=3),
                          rt.settings.lease_s)) == "claimed"
    notify(wired, job)
    flush_for(0.3)
    assert wired.retry_counts()[job] == 2  # the dead instance's lease still holds it
    flush_for(settle_s(), until=lambda: wired.retry_counts()[job] == 3)
    assert wired.retry_counts()[job] == 3
