"""A sender in its own process: what a function instance does with its timer, in a loop."""

from __future__ import annotations

import time

from handler.ledger import open_store
from handler.notify import Notifier, NotifySettings, Outbox
from handler.observe import Observer


def deliver_until_quiet(store_url: str, env: dict[str, str], seconds: float) -> None:
    """Deliver until nothing has been pending for a second (or `seconds` pass)."""
    store = open_store(store_url)
    try:
        settings = NotifySettings.from_env(env)
        notifier = Notifier(Outbox(store), settings.channels, Observer(quiet=True), base_s=0.05, cap_s=0.3)
        end, quiet_since = time.time() + seconds, None
        while time.time() < end:
            report = notifier.deliver(15)  # room for one 10 s send and its margin
            if report.pending == 0:
                quiet_since = quiet_since or time.time()
                if time.time() - quiet_since > 1.0:
                    return
            else:
                quiet_since = None
            time.sleep(0.005)
    finally:
        store.close()
