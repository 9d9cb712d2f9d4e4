"""A job whose notice was lost is found within the bound whatever DescribeJobs' order, with many
more retained FAILED jobs than one sweep can list, through timer invocations that each start cold:
the sweep walks on from a cursor in the ledger instead of restarting at offset 0."""

from __future__ import annotations

import pytest

from emulator import Emulator
from handler import app
from handler.ledger import Ledger, open_store

from .scenario import BOUND, RETAINED, age, lose_notices, sweep_pages, timer, timers_until_retried

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
def test_once_a_pass_showed_oldest_first_pages_older_than_max_age_are_skipped(
        wired: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = wired
    monkeypatch.setenv("AUTORETRY_POLICY", "version: 1\ndefault: {action: RETRY}\n"
                                           "limits: {max_failure_age: 1h}")
    age(emu, emu.add_failed_jobs(RETAINED, "retained"), 3 * 3600)
    for _ in range(BOUND):  # a whole pass, page by page: nothing known of the order yet
        timer()
        if Ledger(open_store(app.runtime().config.store)).sweep_cursor("ap-guangzhou").passes:
            break
    ledger = Ledger(open_store(app.runtime().config.store))
    assert ledger.sweep_cursor("ap-guangzhou").ascending

    lost = lose_notices(emu, 1)
    pages_before = sweep_pages(emu)
    took = timers_until_retried(emu, lost, 1)

    assert took == 1
    # A binary search on one-job pages, not a walk through fifteen pages of old failures.
    assert sweep_pages(emu) - pages_before < RETAINED // 100
    assert sum(emu.retry_counts().values()) == 1
