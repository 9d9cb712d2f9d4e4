"""The sweep's cursor on every store: one walker per region, the next takes over where it stopped
once its lease runs out, and a walker that lost its lease cannot move the cursor any more."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from handler.ledger import Ledger

from ..ledger.conftest import STORES, FakeClock

REGION = "ap-guangzhou"


@pytest.mark.parametrize("kind", sorted(STORES))
def test_one_walker_per_region_and_the_next_takes_over_where_the_last_stopped(
        kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    with STORES[kind](tmp_path) as store:
        first, second = Ledger(store, clock=clock), Ledger(store, clock=clock)
        held = first.take_walk(REGION, lease_s=60)
        assert held is not None and held.offset == 0
        assert second.take_walk(REGION, lease_s=60) is None  # taken
        assert first.move_walk(replace(held, offset=300, passes=2), lease_s=60)

        clock.now += 61  # the first walker died: its lease ran out
        taken = second.take_walk(REGION, lease_s=60)
        assert taken is not None and (taken.offset, taken.passes) == (300, 2)
        assert not first.move_walk(replace(held, offset=900), lease_s=60)  # no longer its walk
        assert second.sweep_cursor(REGION).offset == 300

        assert second.release_walk(replace(taken, offset=400))
        again = first.take_walk(REGION, lease_s=60)  # released: free at once
        assert again is not None and again.offset == 400
        assert first.sweep_cursor("eu-frankfurt").offset == 0  # one cursor per region


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_walker_that_renews_keeps_its_short_lease_and_its_cursor_where_it_saved_it(
        kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    with STORES[kind](tmp_path) as store:
        first, second = Ledger(store, clock=clock), Ledger(store, clock=clock)
        held = first.take_walk(REGION, lease_s=10)
        assert held is not None
        assert first.move_walk(replace(held, offset=200), lease_s=10)
        for _ in range(3):  # renewed from its heartbeat's thread, which names the walker
            clock.now += 8
            assert first.renew_walk(REGION, 10, first.holder)
            assert second.take_walk(REGION, lease_s=10) is None
        assert first.sweep_cursor(REGION).offset == 200  # a renewal does not move the cursor
        clock.now += 11  # the walker died
        assert not second.renew_walk(REGION, 10)  # not its walk
        taken = second.take_walk(REGION, lease_s=10)
        assert taken is not None and taken.offset == 200
        assert not first.renew_walk(REGION, 10, first.holder)
