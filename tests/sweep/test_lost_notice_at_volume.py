"""A job whose notice was lost is found within the bound whatever DescribeJobs' order, with many
more retained FAILED jobs than one sweep can list, through timer invocations that each start cold:
the sweep walks on from a cursor in the ledger instead of restarting at offset 0."""

from __future__ import annotations

import pytest

from emulator import Emulator
from handler import app
from handler.ledger import Ledger, open_store

from .scenario import BOUND, RETAINED, lose_notices, sweep_pages, timer, timers_until_retried

ORDERS = ["newest-first", "oldest-first", "unordered"]


def cursor_offset() -> int:
    ledger = Ledger(open_store(app.runtime().config.store))
    return ledger.sweep_cursor(app.runtime().config.regions[0]).offset


@pytest.mark.parametrize("emu", ORDERS, indirect=True)
def test_a_lost_notice_among_retained_failures_is_found_within_ten_timers_in_any_order(
        crowded: Emulator) -> None:
    emu = crowded
    for _ in range(2):  # the walk is under way, its cursor somewhere in the listing
        timer()
    assert 0 < cursor_offset() < RETAINED
    assert sweep_pages(emu) < RETAINED // 100  # two sweeps cannot list it all: a pass takes several

    lost = lose_notices(emu, 3)
    took = timers_until_retried(emu, lost, BOUND)

    assert took is not None, f"{emu.behaviour.listing_order}: lost notices not found in {BOUND} timers"
    if emu.behaviour.listing_order == "newest-first":
        assert took == 1  # the first page, listed by every sweep
    counts = emu.retry_counts()
    assert all(counts[j] == 1 for j in lost)
    assert sum(counts.values()) == len(lost)  # nothing retained was retried


@pytest.mark.parametrize("emu", ["oldest-first"], indirect=True)
def test_once_a_pass_showed_oldest_first_each_timer_also_lists_the_newest_failures(
        crowded: Emulator) -> None:
    emu = crowded
    for _ in range(BOUND):  # a whole pass: nothing known of the order before
        timer()
        if Ledger(open_store(app.runtime().config.store)).sweep_cursor("ap-guangzhou").passes:
            break
    ledger = Ledger(open_store(app.runtime().config.store))
    assert ledger.sweep_cursor("ap-guangzhou").ascending
    assert cursor_offset() < RETAINED // 2  # the walk is far from the end

    lost = lose_notices(emu, 1)  # the newest failure: the last in this order
    assert timers_until_retried(emu, lost, 1) == 1
    assert sum(emu.retry_counts().values()) == 1
