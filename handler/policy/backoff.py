"""Backoff: how long after a failure its retry is due, a pure function of retries already spent."""

from __future__ import annotations

import hashlib
import math
import random
from typing import Literal

Jitter = Literal["full", "none"]


def backoff_delay(spent: int, initial: float, factor: float, cap: float, jitter: Jitter,
                  rng: random.Random) -> float:
    """min(cap, initial · factor^spent); with full jitter a uniform draw from [0, that]."""
    if initial <= 0 or cap <= 0:
        return 0.0
    # Compare in log space: factor^spent overflows a float long before anyone reaches the cap.
    n = max(spent, 0)
    log_delay = math.log(initial) + n * math.log(factor)
    if log_delay >= math.log(cap):
        delay = cap
    else:
        try:
            delay = min(cap, initial * factor**n)
        except OverflowError:  # a tiny initial times a huge power: the product itself is small
            delay = min(cap, math.exp(log_delay))
    if jitter == "full":
        return rng.uniform(0.0, delay)
    return delay


def seeded_rng(*parts: object) -> random.Random:
    """A random source fixed by `parts` (the failure key, counter and step): deciding the same
    failure twice — once when it arrives, again when its backoff comes due — draws the same delay."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
