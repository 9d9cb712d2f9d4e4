"""Invoke the function once with an event file, as the platform would."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

from handler.commands import EXIT_STATUS, Refused, UsageError, acting_runtime, one_line, where_the_store_is

PROG = "python -m handler invoke"


class LocalLambdaContext:
    """Just enough of AWS's context object for the entry point."""

    def __init__(self, seconds: float = 30.0) -> None:
        import time
        self._end = time.time() + seconds
        self.aws_request_id = uuid.uuid4().hex
        self.function_name = "batch-autoretry-local"

    def get_remaining_time_in_millis(self) -> int:
        import time
        return int((self._end - time.time()) * 1000)


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS)
    ap.add_argument("file", help="a JSON event, e.g. events/scf-apigw-push-envelope.json ('-' for stdin)")
    ap.add_argument("--lambda", dest="aws", action="store_true", help="use lambda_handler")
    args = ap.parse_args(argv)
    os.environ.setdefault("AUTORETRY_LOCAL", "true")
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        event = json.loads(text)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read event {args.file}: {e}") from None
    from handler.app import RedeliverLater, lambda_handler, main_handler
    from handler.config import Config

    note = where_the_store_is(Config.from_env().store)
    if note:
        print(f"ledger: {note}", file=sys.stderr)
    # The function answers a caller "misconfigured; see its log": here the operator is the caller,
    # so a setting that cannot be used, or a ledger other than AUTORETRY_LEDGER_ID's, is said in
    # the one line (via one_line).
    acting_runtime()

    try:
        if args.aws:
            result = lambda_handler(event, LocalLambdaContext())
        else:
            result = main_handler(event, {"request_id": uuid.uuid4().hex, "time_limit_in_ms": 30000})
    except RedeliverLater as e:
        # A queue, timer or direct invocation answered 5xx: the function fails the invocation so
        # that the platform delivers it again. Here that is the end of the story: say why.
        raise Refused(f"the function failed the invocation (the platform would deliver it "
                      f"again): {e}{_store_hint(str(e))}") from None
    print(json.dumps(result, indent=2))
    return 0 if int(result.get("statusCode", 200)) < 400 else 1


def _store_hint(error: str) -> str:
    if "ledger unavailable" not in error:
        return ""
    from handler.config import Config, ConfigError
    from handler.ledger import describe_store

    try:
        store = describe_store(Config.from_env().store)
    except ConfigError:
        return ""
    return f" (AUTORETRY_STORE={store}: is it running? the function's log line says more)"
