"""Backoff properties: never negative, never above the cap, jitter inside [0, delay], and without
jitter never shrinking as retries are spent."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.policy.backoff import backoff_delay, seeded_rng
from handler.policy.durations import format_duration, parse_duration

spent = st.integers(min_value=0, max_value=10_000)
initial = st.floats(min_value=0, max_value=86_400, allow_nan=False)
factor = st.floats(min_value=1, max_value=100, allow_nan=False)
cap = st.floats(min_value=0, max_value=86_400, allow_nan=False)
jitter = st.sampled_from(["full", "none"])
seed = st.integers(min_value=0, max_value=2**32)


@given(spent, initial, factor, cap, jitter, seed)
def test_delay_is_never_negative_nor_above_the_cap(n: int, i: float, f: float, c: float, j: str,
                                                   s: int) -> None:
    d = backoff_delay(n, i, f, c, j, random.Random(s))  # type: ignore[arg-type]
    assert 0 <= d <= c


@given(spent, initial, factor, cap, seed)
def test_full_jitter_stays_within_zero_and_the_unjittered_delay(n: int, i: float, f: float, c: float,
                                                                s: int) -> None:
    plain = backoff_delay(n, i, f, c, "none", random.Random(s))
    jittered = backoff_delay(n, i, f, c, "full", random.Random(s))
    assert 0 <= jittered <= plain


@given(spent, initial, factor, cap)
def test_without_jitter_delay_never_shrinks_as_retries_are_spent(n: int, i: float, f: float,
                                                                 c: float) -> None:
    rng = random.Random(0)
    assert backoff_delay(n, i, f, c, "none", rng) <= backoff_delay(n + 1, i, f, c, "none", rng)


@given(st.integers(min_value=0, max_value=30), st.floats(min_value=0.001, max_value=1000),
       st.floats(min_value=1, max_value=10), seed)
def test_without_jitter_delay_is_initial_times_factor_to_the_retries_spent(n: int, i: float, f: float,
                                                                          s: int) -> None:
    huge_cap = 1e300
    assert backoff_delay(n, i, f, huge_cap, "none", random.Random(s)) == pytest.approx(i * f**n)


def test_huge_retry_counts_reach_the_cap_without_overflow() -> None:
    assert backoff_delay(10**9, 1.0, 100.0, 600.0, "none", random.Random(0)) == 600.0


def test_zero_initial_means_no_delay_whatever_the_factor() -> None:
    assert backoff_delay(5, 0.0, 2.0, 600.0, "none", random.Random(0)) == 0.0


def test_seeded_rng_is_stable_for_the_same_parts_and_differs_for_others() -> None:
    assert seeded_rng("k", "attempts", 1).random() == seeded_rng("k", "attempts", 1).random()
    assert seeded_rng("k", "attempts", 1).random() != seeded_rng("k", "attempts", 2).random()


@given(st.integers(min_value=0, max_value=400 * 86_400))
def test_formatted_durations_parse_back_to_the_same_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("10m", 600), ("24h", 86_400), ("1h30m", 5_400), ("1d", 86_400), ("250ms", 0.25),
    (45, 45), ("45", 45), ("2.5s", 2.5), (" 10 m ", 600),
])
def test_durations_read_as_people_write_them(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "-5s", "m", "1h-30m", True, None, [1], "inf"])
def test_durations_that_are_not_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)
