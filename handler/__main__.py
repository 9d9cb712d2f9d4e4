"""`python -m handler COMMAND`: the local commands around the function (see USAGE below)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m handler COMMAND [ARGS]

commands:
  serve [--host H] [--port P]        a local HTTP endpoint handing requests to main_handler
  invoke FILE [--lambda]             invoke the function with a sample event (see events/)
  sweep                              drain due work, then reconcile recent FAILED jobs
  policy check FILE... | explain FILE --job JOB
                                     validate policy files, or explain a decision
  ledger list|show JOB_ID|stats      what the function decided, and the ledger's state
  demo                               emulator + endpoint + a mixed fleet of jobs, then a table
  push JOB_ID [--dups N] [--url URL] send the local endpoint a failure notice as the topic would
  verify URL [--token T | --hmac-secret S]
                                     send a deployed endpoint a notice, explain its answer
  pull [--once] [--queue NAME]       pull the TDMQ-CMQ queue into the ledger, then drain
  wire [--http URL] [--dry-run]      create or check the topic, queue and subscription
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "serve":
        from handler.commands.serve import main as serve
        return serve(rest)
    if command == "invoke":
        from handler.commands.invoke import main as invoke
        return invoke(rest)
    if command == "sweep":
        from handler.commands.sweep import main as sweep
        return sweep(rest)
    if command == "ledger":
        from handler.commands.ledger import main as ledger
        return ledger(rest)
    if command == "policy":
        from handler.commands.policy import main as policy
        return int(policy(rest))
    if command == "push":
        from handler.commands.push import main as push
        return push(rest)
    if command == "verify":
        from handler.commands.verify import main as verify
        return verify(rest)
    if command in ("pull", "wire"):
        from handler.commands import pull, wire
        return int((pull if command == "pull" else wire).main(rest))
    if command == "demo":
        from handler.commands.demo import main as demo
        return demo(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
