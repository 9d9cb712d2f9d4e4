"""Pacing: how long this invocation may work, and turns of the API's limits shared by the fleet."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from handler.ledger import Ledger
from handler.retrier.settings import Settings


class OutOfTime(Exception):
    """The invocation's time is nearly up: leave the rest due for the next one."""


class NoTurn(OutOfTime):
    """No turn of the API's limit was granted in time (another instance holds them)."""


@dataclass(frozen=True)
class Deadline:
    """When this invocation must stop taking work (the platform's limit less a reserve)."""

    at: float
    clock: Callable[[], float] = time.time

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.time) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    def fits(self, call_s: float) -> bool:
        """True if a call that may take `call_s` still ends before the deadline."""
        return self.remaining() >= call_s


# A call whose caller died before reporting it done (`call_done`) is taken as answered this long
# after its client's timeout: the client sends its request once connected, within that timeout, so
# it cannot arrive later. Until then the action's turn stays taken across the fleet.
SEND_MARGIN_S = 1.0


class Pacer:
    """Takes turns of the account-wide limits from the ledger for every API call. The turns keep
    the calls' arrivals 1/rate apart (`Ledger.take_token`), which is within the API's limit
    whether it counts a sliding window of one second or a token bucket of any burst."""

    def __init__(self, ledger: Ledger, settings: Settings, call_timeout_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ledger, self.settings = ledger, settings
        self.call_timeout_s = call_timeout_s
        self.sleep = sleep

    @contextmanager
    def turn(self, action: str, deadline: Deadline, wait: bool = True) -> Iterator[None]:
        """Take a turn to call `action` (waiting for one only if asked), make the call in the
        block, and free the turn once the call has its answer or failed. Raises NoTurn if no turn
        came within `max_token_wait_s`, OutOfTime if waiting would pass the deadline."""
        slot = self._take(action, deadline, wait)
        try:
            yield
        finally:
            self.ledger.call_done(action, slot)

    def _take(self, action: str, deadline: Deadline, wait: bool) -> float:
        rate = self.settings.rates[action]
        waited = 0.0
        while True:
            token = self.ledger.take_token(action, rate, self.settings.window_s,
                                           call_s=self.call_timeout_s + SEND_MARGIN_S)
            if token.slot is not None:
                return token.slot
            pause = token.wait_s
            if not wait or waited + pause > self.settings.max_token_wait_s:
                raise NoTurn(action)
            if deadline.remaining() - pause < self.call_timeout_s:
                raise OutOfTime(action)
            self.sleep(pause)
            waited += pause
