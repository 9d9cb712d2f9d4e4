"""What the local commands share: a problem the user can fix is told in one line (what is wrong,
what to set) and a non-zero exit, never a traceback; and the ledger opened on its own, for commands
that only read it.

Only errors known to mean "the configuration or its surroundings are wrong" become one line; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handler.ledger import Ledger

EXIT_REFUSED = 2
Main = Callable[[list[str]], int]

CREDENTIAL_VARIABLES = ("set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (on SCF, the "
                        "execution role's TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY and "
                        "TENCENTCLOUD_SESSIONTOKEN)")
_AUTH_CODES = ("AuthFailure", "InvalidCredential", "UnauthorizedOperation", "NoCredentials")


class Refused(Exception):
    """The command cannot go on; the message says what is wrong and what to set."""


def explain(e: BaseException) -> str | None:
    """The one line for an error a user can fix, or None for anything else."""
    from handler.config import ConfigError
    from handler.gateway import ApiError
    from handler.ledger.store import StoreUnavailable
    from handler.policy.loader import PolicyError

    if isinstance(e, Refused):
        return str(e)
    if isinstance(e, StoreUnavailable):  # its message names the store, never its password
        return f"ledger unavailable: {e} (is it running? AUTORETRY_STORE names it)"
    if isinstance(e, PolicyError) or isinstance(getattr(e, "__context__", None), PolicyError):
        # The app wraps a policy error in ConfigError; say which variable holds the policy.
        text = str(e)
        return text if "AUTORETRY_POLICY" in text else f"AUTORETRY_POLICY: {text}"
    if isinstance(e, ConfigError):
        return str(e)
    if isinstance(e, ApiError):
        if e.code.startswith(_AUTH_CODES):
            return (f"the Batch API refused the credentials ({e.code}): {CREDENTIAL_VARIABLES}"
                    if e.code != "NoCredentials" else
                    f"no Tencent Cloud credentials: {CREDENTIAL_VARIABLES}")
        return (f"the Batch API call {e.action} failed ({e.code}: {e.message}); check "
                "AUTORETRY_BATCH_ENDPOINT, AUTORETRY_BATCH_PROTOCOL and the network")
    return None


def one_line(prog: str) -> Callable[[Main], Main]:
    """Decorate a command's `main(argv)`: known errors print `prog: <one line>` on stderr and
    exit 2."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: list[str]) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except Exception as e:
                line = explain(e)
                if line is None:
                    raise
                print(f"{prog}: {' '.join(line.split())}", file=sys.stderr)
                return EXIT_REFUSED
        return run

    return wrap


def sqlite_path(store_url: str) -> tuple[str, bool] | None:
    """For a SQLite store URL: the file's absolute path and whether the URL spells it relative
    (`sqlite:///var/x.db` is relative to the working directory, `sqlite:////var/x.db` is not)."""
    if not store_url.lower().startswith("sqlite:"):
        return None
    path = store_url[len("sqlite://"):]
    path = path[1:] if path.startswith("/") else path
    return os.path.abspath(path), not os.path.isabs(path)


def where_the_store_is(store_url: str) -> str | None:
    """'sqlite:///var/x.db (relative to /here)' for a relative SQLite path, else None: the same URL
    names another file in another directory, which is the usual cause of 'no record'."""
    found = sqlite_path(store_url)
    if found is None or not found[1]:
        return None
    return f"{store_url} (relative to {os.getcwd()})"


def open_ledger(must_exist: bool = True) -> tuple[Ledger, str]:
    """The ledger AUTORETRY_STORE names and the default region, and nothing else: no policy, no
    Batch API client. `must_exist`: a SQLite file that is not there is refused rather than made
    empty (reading an empty ledger would only say 'no record')."""
    from handler.config import Config
    from handler.ledger import Ledger, open_store

    config = Config.from_env()
    found = sqlite_path(config.store)
    note = where_the_store_is(config.store)
    if found is not None and must_exist and not os.path.exists(found[0]):
        spelled = f" ({note})" if note else ""
        raise Refused(f"no ledger at {found[0]}{spelled}: run where the function runs, or set "
                      f"AUTORETRY_STORE=sqlite:///{found[0]}")
    if note:
        print(f"ledger: {note}", file=sys.stderr)
    try:
        store = open_store(config.store)
    except ValueError as e:  # an unknown scheme, or a DynamoDB table without a region
        raise Refused(str(e)) from None
    return Ledger(store, retention_s=config.retention_s), config.default_region
