"""What the local commands share: a problem the user can fix is told in one line (what is wrong,
what to set) and a non-zero exit, never a traceback; the function's parts for a command that acts,
behind the function's own ledger check; and the ledger opened on its own, for commands that only
read it.

Only errors known to mean "the configuration or its surroundings are wrong" become one line; any
other exception is a bug and keeps its traceback. One exit status for every command: EXIT_STATUS.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handler.app import Runtime
    from handler.config import Config
    from handler.ledger import Ledger

EXIT_FAILED = 1  # the command could not do its work: ledger, Batch API, port, configuration
EXIT_USAGE = 2  # an argument it cannot take (argparse exits 2 for its own usage errors too)
EXIT_STATUS = """exit status: 0 done; 1 a runtime failure (the ledger, the Batch API, a port in use,
a setting that cannot be used, the wrong ledger identity); 2 a usage error (an argument or a
value the command cannot take)"""
Main = Callable[[list[str]], int]

CREDENTIAL_VARIABLES = ("set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (on SCF, the "
                        "execution role's TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY and "
                        "TENCENTCLOUD_SESSIONTOKEN)")
_AUTH_CODES = ("AuthFailure", "InvalidCredential", "UnauthorizedOperation", "NoCredentials")


class Refused(Exception):
    """The command cannot go on; the message says what is wrong and what to set. Exit 1."""


class UsageError(Refused):
    """An argument's value the command cannot take; the message names it and what it takes.
    Exit 2, as argparse's own usage errors."""


def explain(e: BaseException) -> str | None:
    """The one line for an error a user can fix, or None for anything else."""
    from handler.config import ConfigError
    from handler.gateway import ApiError
    from handler.ledger.identity import LedgerForgot
    from handler.ledger.store import StoreUnavailable
    from handler.policy.loader import PolicyError

    if isinstance(e, Refused):
        return str(e)
    if isinstance(e, LedgerForgot):  # its message names AUTORETRY_LEDGER_ID and `ledger init --adopt`
        return f"ledger forgot: {e}"
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
    exit EXIT_USAGE for a UsageError, EXIT_FAILED for any other."""

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
                return EXIT_USAGE if isinstance(e, UsageError) else EXIT_FAILED
        return run

    return wrap


def time_budget(seconds: float, option: str = "--seconds") -> float:
    """`seconds` if it is a time budget a command can keep (above 0, finite), else a UsageError."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(f"{option} {seconds:g}: expected a number of seconds above 0")
    return seconds


def checked_job_id(job_id: str) -> str:
    """`job_id` if it can be a Batch job id, else a UsageError saying the form: refused, rather
    than answered 'no record'."""
    from handler.notices import JOB_ID_PATTERN

    if not re.match(JOB_ID_PATTERN, job_id):
        raise UsageError(f"{job_id!r} is not a Batch job id: expected job- and 8 lowercase letters "
                         "or digits, such as job-3k9x2m1a")
    return job_id


def checked_region(region: str) -> str:
    """`region` (a --region value) if it can be a region, else a UsageError."""
    from handler.notices import REGION_PATTERN

    if not re.match(REGION_PATTERN, region):
        raise UsageError(f"--region {region!r}: expected a region such as ap-guangzhou")
    return region


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


def acting_runtime(config: Config | None = None, takes: str | None = None) -> Runtime:
    """The function's parts for a command that acts (retries jobs, or takes notices off a queue),
    past the function's own check: with AUTORETRY_LEDGER_ID set, the ledger must be the one it
    names (see `guard`). `takes` names what the command would take from the deployed function (a
    real queue): then AUTORETRY_LEDGER_ID must be set, so that what is taken goes into the
    function's ledger and not into whatever local one AUTORETRY_STORE names. Every acting command
    builds its parts here, so a new one cannot skip the check."""
    from handler.app import runtime
    from handler.config import Config
    from handler.ledger import describe_store
    from handler.ledger.identity import LEDGER_ID_VARIABLE

    config = Config.from_env() if config is None else config
    shown = where_the_store_is(config.store) or describe_store(config.store)
    # Both refused before the store is opened: a SQLite file is not even created.
    if takes is not None and config.ledger_id is None:
        raise Refused(f"{takes} is the deployed function's, and {LEDGER_ID_VARIABLE} is not set: "
                      f"its messages would be deleted into the ledger at {shown} and their jobs "
                      "retried on a budget the function does not see. Set AUTORETRY_STORE to the "
                      f"function's store and {LEDGER_ID_VARIABLE} to its identity (`python -m "
                      "handler ledger init` against that store prints it)")
    found = sqlite_path(config.store)
    if config.ledger_id is not None and found is not None and not os.path.exists(found[0]):
        raise Refused(f"no ledger at {shown}, so not the one {LEDGER_ID_VARIABLE}="
                      f"{config.ledger_id} names: nothing was done. Set AUTORETRY_STORE to the "
                      "function's store")
    rt = runtime(config)
    guard(rt)
    return rt


def guard(rt: Runtime) -> None:
    """The function's check (handler.app: `check_identity(AUTORETRY_LEDGER_ID)` before anything),
    made before a command acts: a ledger other than the one AUTORETRY_LEDGER_ID names is refused
    in one line. It also arms every later claim with the same check, as in the function."""
    from handler.ledger import describe_store
    from handler.ledger.identity import ADOPT_COMMAND, LEDGER_ID_VARIABLE, LedgerForgot

    expected = rt.config.ledger_id
    if expected is None:  # no deployment's identity to hold it to: as the function, no check
        return
    try:
        rt.ledger.check_identity(expected)
    except LedgerForgot:
        found = rt.ledger.identity()
        shown = where_the_store_is(rt.config.store) or describe_store(rt.config.store)
        if found is None:
            what, remedy = "has no identity", (
                f"if it is that store, it forgot (docs/ledger.md): `{ADOPT_COMMAND}` accepts it "
                f"as it is, then set {LEDGER_ID_VARIABLE} to the identity it prints")
        else:
            what, remedy = f"is ledger {found}", (
                f"if it is that store, set {LEDGER_ID_VARIABLE} to its identity (`python -m "
                "handler ledger init` prints it)")
        raise Refused(f"{shown} {what}, not the one {LEDGER_ID_VARIABLE}={expected} names: "
                      f"nothing was done. Set AUTORETRY_STORE to the function's store; {remedy}"
                      ) from None
