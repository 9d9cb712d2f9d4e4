"""Keeping a short lease while its holder works: a thread renews it a few times per lease.

The drainer's lease and the sweep walk's are short (Settings.renewed_lease_s), so an instance that
dies holding one (SIGKILLed, out of memory, its invocation cut off) frees it within that time for
the next notice or timer. The holder's work between two looks at the ledger can outlast a short
lease (a flush waits for API turns and calls that may time out), so the renewal runs beside it on
a thread of its own, and stops before the holder lets go.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from handler.observe import Observer

RENEWALS_PER_LEASE = 3


class Heartbeat:
    """`renew()` every `lease_s / 3` on a daemon thread while the block runs, until it returns
    False (the lease is no longer ours: the holder finds out at its next look at the ledger). An
    error is logged and the next beat tries again; a lease that runs out meanwhile costs a second
    holder's work, never a second retry (claims guard each retry)."""

    def __init__(self, renew: Callable[[], bool], lease_s: float, observer: Observer,
                 what: str) -> None:
        self._renew, self._what, self._observer = renew, what, observer
        self._period_s = lease_s / RENEWALS_PER_LEASE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self._what}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            # A renewal under way finishes first (a store call is bounded by its own timeout), so
            # none lands after the holder has let go; one that did would find the lease not ours.
            self._thread.join(timeout=self._period_s * RENEWALS_PER_LEASE)

    def _beat(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                if not self._renew():
                    self._observer.warning("lease lost while working; another holder has it",
                                           lease=self._what)
                    return
            except Exception as e:  # the store failed: try again at the next beat
                self._observer.warning("could not renew a lease", lease=self._what,
                                       error=f"{type(e).__name__}: {e}"[:300])
