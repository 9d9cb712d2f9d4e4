"""Tencent's "2 requests per second" without saying how it counts: the emulator plays either
reading (`rate_limit`), each refusing with RequestLimitExceeded as the service does. `window`: at
most N in any window of one second. `bucket`: a token bucket refilled at N per second holding one
token, so requests at least 1/N apart (a bucket holding more admits all that this one does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from emulator import Behaviour, Emulator
from emulator.__main__ import _parser, _start
from emulator.api import RateLimiter

from .sdk import REGION, SECRET_ID, SECRET_KEY, call


def limiter(reading: str) -> RateLimiter:
    return RateLimiter({"DescribeJobs": 2}, speedup=1.0, behaviour=Behaviour(rate_limit=reading))


def test_the_window_reading_admits_two_at_once_and_no_third_within_a_second() -> None:
    window = limiter("window")
    times = (0.0, 0.01, 0.5, 0.99, 1.0, 1.01, 1.02)
    assert [window.allow("DescribeJobs", now=t) for t in times] == \
        [True, True, False, False, True, True, False]


def test_the_bucket_reading_admits_one_every_half_second_and_a_refusal_costs_no_token() -> None:
    bucket = limiter("bucket")
    times = (0.0, 0.01, 0.3, 0.5, 0.99, 1.0, 1.6, 1.7)
    assert [bucket.allow("DescribeJobs", now=t) for t in times] == \
        [True, False, False, True, False, True, True, False]


def answer(emu: Emulator, job: str) -> str:
    """What DescribeJobs answered through the real SDK: ok, or its error code."""
    try:
        call(emu, "DescribeJobs", {"JobIds": [job]})
    except TencentCloudSDKException as e:
        return str(e.code)
    return "ok"


@pytest.mark.parametrize(("reading", "answers"), [
    ("window", ["ok", "ok", "RequestLimitExceeded"]),
    ("bucket", ["ok", "RequestLimitExceeded", "RequestLimitExceeded"]),
])
def test_each_reading_refuses_with_request_limit_exceeded(reading: str, answers: list[str]) -> None:
    # Real time (speedup 1): three calls back to back take milliseconds, well within 0.5 s.
    with Emulator(SECRET_ID, SECRET_KEY, REGION, rate_limit=reading) as emu:
        job = emu.add_failed_job("listed")
        assert [answer(emu, job) for _ in range(3)] == answers


@pytest.fixture
def emu_window() -> Iterator[Emulator]:
    with Emulator(SECRET_ID, SECRET_KEY, REGION) as emu:
        yield emu


def test_the_reading_can_be_switched_on_a_running_emulator(emu_window: Emulator) -> None:
    job = emu_window.add_failed_job("listed")
    assert [answer(emu_window, job) for _ in range(2)] == ["ok", "ok"]
    emu_window.behaviour.rate_limit = "bucket"  # the last call was just now: no token yet
    assert answer(emu_window, job) == "RequestLimitExceeded"
    with pytest.raises(ValueError, match="window, bucket"):
        Behaviour(rate_limit="sliding")


@pytest.mark.parametrize(("flags", "reading"), [([], "window"), (["--rate-limit", "bucket"], "bucket")])
def test_the_flag_chooses_the_reading(flags: list[str], reading: str) -> None:
    emu = _start(_parser().parse_args(["--port", "0", *flags]))
    try:
        assert emu.behaviour.rate_limit == reading and emu.limiter.behaviour is emu.behaviour
    finally:
        emu.stop()
