"""`python -m handler ledger init [--adopt]`: give a ledger its identity, or print the one it has.

The deployment then passes that identity to the function as AUTORETRY_LEDGER_ID; a ledger that
later lacks it (emptied, rolled back past its setup, replaced) retries nothing until adopted.
"""

from __future__ import annotations

import sys
from typing import TextIO

from handler.ledger import Ledger, StoreUnavailable, open_store
from handler.ledger.identity import LEDGER_ID_VARIABLE, LedgerForgot


def ledger_init(store_url: str, adopt: bool = False, expected: str | None = None) -> str:
    """The identity of the ledger at `store_url`, written first if it has none. With `expected`
    (the deployment's AUTORETRY_LEDGER_ID) a ledger that lost it gets a new identity only with
    `adopt`; otherwise this raises LedgerForgot (see `Ledger.init_identity`)."""
    store = open_store(store_url)
    try:
        return Ledger(store).init_identity(adopt=adopt, expected=expected)
    finally:
        store.close()


def init_command(store_url: str, adopt: bool, expected: str | None,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run `ledger init`: what happened, then the identity alone on the last line of `out`.
    Exit status 0, or 1 (a runtime failure, as every command's) when the ledger forgot (without
    --adopt) or cannot be reached."""
    try:
        store = open_store(store_url)
        try:
            ledger = Ledger(store)
            before = ledger.identity()
            identity = ledger.init_identity(adopt=adopt, expected=expected)
        finally:
            store.close()
    except LedgerForgot as e:
        print(f"ledger forgot: {e}", file=err)
        return 1
    except StoreUnavailable as e:  # the message names the store, never its credentials
        print(f"ledger unavailable: {e}", file=err)
        return 1
    if before is not None:
        print(f"{store.name}: already initialised", file=out)
    elif adopt:
        print(f"{store.name}: adopted as it is, with a new identity. Jobs whose retries it lost "
              f"start a new budget. Set {LEDGER_ID_VARIABLE} to:", file=out)
    else:
        print(f"{store.name}: initialised. Set {LEDGER_ID_VARIABLE} to:", file=out)
    if expected is not None and expected != identity:
        print(f"note: {LEDGER_ID_VARIABLE} is {expected}; the function retries nothing on this "
              "ledger until it is set to the identity below", file=err)
    print(identity, file=out)
    return 0
