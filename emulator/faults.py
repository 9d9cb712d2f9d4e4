"""Faults the emulator injects at a configurable rate, as a real network and service produce them."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

# What each kind does:
#   internal_error  answers {"Error": {"Code": "InternalError"}}; nothing applied
#   throttle        answers RequestLimitExceeded; nothing applied
#   http_500        answers HTTP 500 with a text body; nothing applied
#   timeout         holds the request past the client's timeout, then closes; nothing applied
#   reset           resets the connection before reading the action; nothing applied
#   lost_answer     APPLIES the action (RetryJobs really re-runs the jobs), then resets the
#                   connection: the ambiguous case a caller must never repeat blindly
KINDS = ("internal_error", "throttle", "http_500", "timeout", "reset", "lost_answer")


@dataclass
class Faults:
    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    actions: tuple[str, ...] = ("RetryJobs", "DescribeJobs", "DescribeJob", "DescribeTask")
    timeout_s: float = 6.0  # how long a `timeout` fault holds the request
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, action: str) -> str | None:
        """The fault to inject into this call, if any."""
        if self.rate <= 0 or action not in self.actions:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind

    @property
    def total(self) -> int:
        return sum(self.injected.values())
