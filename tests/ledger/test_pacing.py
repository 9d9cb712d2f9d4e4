"""Pacing under either reading of the API's limit. Tencent's "2 requests per second" may count a
sliding window of one second or a token bucket; the emulator plays each (`rate_limit`). A fleet of
instances sharing one ledger (the real Redis) takes turns for one action and calls the emulator
through the real SDK: whichever reading it plays, no call is refused, and the arrivals it saw
never hold more than the limit in any window."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator

import pytest

from emulator import Emulator
from emulator.behaviour import RATE_LIMITS
from handler import app
from handler.commands.push import list_failed
from handler.gateway import ApiError, BatchGateway, Credentials
from handler.ledger import Ledger
from handler.ledger.redis import RedisStore
from handler.retrier import Deadline, NoTurn, Settings
from handler.retrier.pacing import Pacer

from .conftest import REDIS_URL, delete_redis_prefix, redis_prefix
from .workers import SECRET_ID, SECRET_KEY

REGION = "ap-guangzhou"
SPEEDUP = 10.0  # DescribeJobs: 2 calls per 0.1 s window, one every 50 ms
INSTANCES, THREADS, CALLS = 3, 2, 5  # 30 calls, about 2.5 s


def most_in_any_window(arrivals: list[float], window_s: float) -> int:
    arrivals = sorted(arrivals)
    most, first = 0, 0
    for last, at in enumerate(arrivals):
        while at - arrivals[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("reading", RATE_LIMITS)
def test_a_fleet_sharing_one_ledger_stays_within_the_limit_under_either_reading(reading: str) -> None:
    prefix = redis_prefix()
    settings = Settings.scaled(SPEEDUP)
    spacing = 1 / settings.rates["DescribeJobs"]
    refused: list[str] = []
    with Emulator(SECRET_ID, SECRET_KEY, REGION, speedup=SPEEDUP, rate_limit=reading) as emu:
        job = emu.add_failed_job("listed")
        stores = [RedisStore(f"{REDIS_URL}?prefix={prefix}") for _ in range(INSTANCES)]

        def instance_thread(store: RedisStore, seed: int) -> None:
            rng = random.Random(seed)
            gateway = BatchGateway(endpoint=emu.endpoint, protocol="http",
                                   credentials=lambda: Credentials(SECRET_ID, SECRET_KEY))
            pacer = Pacer(Ledger(store), settings, gateway.timeout_s)
            made = 0
            while made < CALLS:
                try:
                    with pacer.turn("DescribeJobs", Deadline.after(60)):
                        # The request leaves late (a store round trip, the scheduler): its
                        # arrival lies anywhere between the grant and the answer.
                        time.sleep(rng.uniform(0, spacing))
                        gateway.describe_jobs(REGION, [job])
                except NoTurn:
                    continue
                except ApiError as e:
                    refused.append(e.code)
                made += 1

        threads = [threading.Thread(target=instance_thread, args=(stores[i % INSTANCES], i))
                   for i in range(INSTANCES * THREADS)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            for s in stores:
                s.close()
            delete_redis_prefix(prefix)
        arrivals = [c["t"] for c in emu.calls if c["action"] == "DescribeJobs"]
    assert refused == []
    assert len(arrivals) == INSTANCES * THREADS * CALLS
    assert most_in_any_window(arrivals, 1 / SPEEDUP) <= 2
    ordered = sorted(arrivals)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) >= spacing  # what a bucket holding one token needs


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # `wired` points the function here: 1 DescribeJobs turn every 0.25 s, so a call made beside
    # the turns cannot pass for one made after them.
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=2.0) as e:
        yield e


def test_push_list_failed_takes_its_turn_of_the_limit_the_function_shares(wired: Emulator) -> None:
    """The walk-through's first command lists the FAILED jobs with DescribeJobs. It takes its
    turn from the function's ledger: its call arrives 1/rate after the function's last one had its
    answer, instead of beside it, where the function's next call would be refused."""
    failed = wired.add_failed_job("broken")
    rt = app.runtime()
    with Pacer(rt.ledger, rt.settings, rt.gateway.timeout_s).turn("DescribeJobs", Deadline.after(30)):
        rt.gateway.describe_jobs(REGION, [failed])  # the function's call
    assert list_failed(REGION) == [failed]
    function_call, listing = [c for c in wired.calls if c["action"] == "DescribeJobs"]
    assert listing["error"] is None
    assert listing["t"] - function_call["t"] >= 1 / rt.settings.rates["DescribeJobs"]
