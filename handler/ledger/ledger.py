"""The ledger: the due queue, claims with leases, per-job counters, shared turns of the API's limits.

Its rules are written once, in one module per section, over the few atomic primitives of a `Store`
(see `handler.ledger.records` for the records and how a rule is applied):

- `due`: jobs waiting to be verified, leased to one flusher at a time;
- `claims`: failures, claims, what they spend, and every decision kept on the job;
- `turns`: turns of the API's limits shared by every instance, and the drainer lease;
- `holds`: the operator's holds on jobs, which every claim reads;
- `views`: what operators read.
"""

from __future__ import annotations

from handler.ledger.claims import Claims, Look
from handler.ledger.cursor import Cursors
from handler.ledger.due import DueQueue
from handler.ledger.holds import Holds
from handler.ledger.identity import Identity
from handler.ledger.records import (
    DEFAULT_RETENTION_S,
    ClaimOutcome,
    Contention,
    FailureState,
    Hold,
    QueueEntry,
    Spend,
    Spent,
    Step,
    Token,
)
from handler.ledger.turns import Turns
from handler.ledger.views import Views

__all__ = ["DEFAULT_RETENTION_S", "ClaimOutcome", "Contention", "FailureState", "Hold", "Ledger",
           "Look", "QueueEntry", "Spend", "Spent", "Step", "Token"]


class Ledger(Identity, DueQueue, Claims, Holds, Turns, Cursors, Views):
    """Every section over one store, one clock and one owner name (this instance's)."""
