"""Durations as people write them in a policy file: "30s", "10m", "24h", "1h30m", or plain seconds."""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_HELP = 'a duration such as "30s", "10m", "24h", "1h30m", or a number of seconds'


def parse_duration(value: Any) -> float:
    """Seconds in `value`; raises ValueError naming what is accepted."""
    if isinstance(value, bool):  # bool is an int to Python, never a duration to a person
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(f"(?:{_PART.pattern})+", text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    else:
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"expected {DURATION_HELP} (not negative), got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 0s, 45s, 10m, 1h30m, 24h, 3d; fractions of a second as 1.5s.
    Days only from two on: people write a day's limit as 24h."""
    if seconds != int(seconds):
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    if seconds == 0:
        return "0s"
    rest, out = int(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size and (unit != "d" or rest >= 2 * size):
            out += f"{rest // size}{unit}"
            rest %= size
    return out
