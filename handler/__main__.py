"""`python -m handler COMMAND`: the local commands around the function (see USAGE below)."""

from __future__ import annotations

import sys

from handler.commands import EXIT_STATUS, EXIT_USAGE

USAGE = f"""usage: python -m handler COMMAND [ARGS]

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
  deploy scf | teardown              the function on Tencent SCF with all it needs (role, timers,
                                     wiring), made or updated through Tencent's APIs; or removed
  deploy key --key-file PATH | teardown-key
                                     the Tencent key of the function on AWS Lambda: a CAM
                                     sub-user allowed only what it calls; or removed
  hold JOB_ID --reason R             never retry the job until it is released
  release JOB_ID                     let the function retry the job again
  terminate JOB_ID [--reason R]      hold the job, then stop it with TerminateJob

Every command that acts (serve, invoke, sweep, pull, demo, hold, release, terminate) first checks
the ledger's identity as the function does: with AUTORETRY_LEDGER_ID set, a ledger other than the
one it names is refused; pull refuses a real queue unless AUTORETRY_LEDGER_ID is set.

{EXIT_STATUS}
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
    if command in ("hold", "release", "terminate"):
        from handler.commands.hold import COMMANDS
        return COMMANDS[command](rest)
    if command == "deploy":
        from handler.commands.deploy import main as deploy
        return deploy(rest)
    if command == "demo":
        from handler.commands.demo import main as demo
        return demo(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
