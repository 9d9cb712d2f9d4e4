"""SCF timer triggers' cron expressions, and the clock that fires them in emulator time.

SCF's cron (doc 583/9708) has seven fields, "second minute hour day month weekday year"
("0 * * * * * *": every minute at second 0), or the five of standard cron (no second, no year).
Each field is `*`, a number, a range `a-b`, a list `a,b`, or a step `*/n`, `a/n`, `a-b/n`; months
take JAN-DEC, weekdays SUN-SAT (0 is Sunday). Times are UTC, SCF's default time zone. When both
the day and the weekday are restricted, either one matching is enough (as cron has it).

Emulator time runs `speedup` times faster than the wall clock from the moment the clock starts:
one emulator minute is 60/speedup real seconds, so "0 * * * * * *" at speedup 30 fires every 2 s.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# (name, lowest, highest) of the seven fields
_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31),
           ("month", 1, 12), ("weekday", 0, 6), ("year", 1970, 2099))
_NAMES = {"month": {m: i for i, m in enumerate(
              ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)},
          "weekday": {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}}
_PART = re.compile(r"^(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?$")
MAX_CATCH_UP_S = 3600  # emulator seconds checked at most per tick (a stalled machine skips the rest)


class CronError(ValueError):
    """The expression is not one SCF takes; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    text: str
    fields: tuple[frozenset[int], ...]
    day_any: bool
    weekday_any: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) == 5:
            parts = ["0", *parts, "*"]
        if len(parts) != 7:
            raise CronError(f"cron {text!r} has {len(parts)} fields; SCF takes 7 "
                            "(second minute hour day month weekday year) or 5")
        fields = tuple(_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True))
        return cls(text, fields, parts[3] == "*", parts[5] == "*")

    def matches(self, epoch_s: int) -> bool:
        t = time.gmtime(epoch_s)
        second, minute, hour, day, month, weekday, year = self.fields
        if not (t.tm_sec in second and t.tm_min in minute and t.tm_hour in hour
                and t.tm_mon in month and t.tm_year in year):
            return False
        day_ok, weekday_ok = t.tm_mday in day, (t.tm_wday + 1) % 7 in weekday
        if self.day_any or self.weekday_any:
            return day_ok and weekday_ok
        return day_ok or weekday_ok


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        m = _PART.match(part)
        if not m:
            raise CronError(f"cron {name} field {text!r}: expected *, a number, a range a-b, a list "
                            "a,b or a step */n")
        star, first, last, step = m.groups()
        start = low if star else _value(first, name, low, high)
        end = high if star or (step and not last) else _value(last or first, name, low, high)
        every = int(step) if step else 1
        if every < 1 or start > end:
            raise CronError(f"cron {name} field {text!r}: an empty range")
        values.update(range(start, end + 1, every))
    return frozenset(values)


def _value(text: str, name: str, low: int, high: int) -> int:
    number = _NAMES.get(name, {}).get(text.upper()) if not text.isdigit() else int(text)
    if number is None or not low <= number <= high:
        raise CronError(f"cron {name} field: {text!r} is not from {low} to {high}")
    return number


class EmulatorClock:
    """Emulator time: `speedup` times the wall clock's pace, from the moment it was made."""

    def __init__(self, speedup: float, now: Callable[[], float] = time.time) -> None:
        self.speedup, self._now = speedup, now
        self.origin = now()

    def now(self) -> float:
        return self.origin + (self._now() - self.origin) * self.speedup

    def real_wait(self, emulator_s: float) -> float:
        """Real seconds until emulator time reaches `emulator_s` (0 if it has)."""
        return max(0.0, (emulator_s - self.now()) / self.speedup)


class Ticker:
    """Calls `tick(second)` once for every whole emulator second, in order, on a thread of its own,
    until `stop()`."""

    def __init__(self, clock: EmulatorClock, tick: Callable[[int], None]) -> None:
        self.clock, self._tick = clock, tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="emulator-scf-timers",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        last = math.floor(self.clock.now())
        while not self._stop.wait(min(0.5, self.clock.real_wait(last + 1))):
            now = math.floor(self.clock.now())
            for second in range(max(last + 1, now - MAX_CATCH_UP_S), now + 1):
                self._tick(second)
            last = max(last, now)
