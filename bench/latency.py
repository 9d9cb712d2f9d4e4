"""What the latency benchmarks (bench/ledger.py, bench/durable.py) share: timing one call, and a
table of rows `label  operation  n  p50 µs  p99 µs  ops/s` (ops/s is 1 / mean latency for one caller)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Table:
    """The columns' title for the label and each column's width."""

    title: str
    label_w: int
    op_w: int
    n_w: int
    us_w: int
    ops_w: int

    def header(self) -> str:
        return (f"{self.title:{self.label_w}} {'operation':{self.op_w}} {'n':>{self.n_w}} "
                f"{'p50 µs':>{self.us_w}} {'p99 µs':>{self.us_w}} {'ops/s':>{self.ops_w}}")

    def row(self, label: str, op: str, lat: list[float]) -> str:
        return (f"{label:{self.label_w}} {op:{self.op_w}} {len(lat):{self.n_w}d} "
                f"{pct(lat, 0.5) * 1e6:{self.us_w}.0f} {pct(lat, 0.99) * 1e6:{self.us_w}.0f} "
                f"{1 / statistics.fmean(lat):{self.ops_w}.0f}")
