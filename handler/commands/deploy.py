"""Deploy the function on Tencent SCF, or take it down, through Tencent's own APIs; or make the
Tencent key the function uses outside Tencent (AWS Lambda), or delete it.

  deploy scf       the zip (deploy/scf/build.py, or --package), the ledger's identity (`ledger init`
                   on --store, or --ledger-id), the CAM role with its least-privilege policy, the
                   function (Python3.10) with its environment, its pull and sweep timers, with
                   --function-url a function URL, and the wiring `wire` makes (topic, queue,
                   dead-letter queue, subscription). One line a step: created, updated (what
                   changed), or up to date; a second run changes nothing.
  deploy teardown  the triggers, the function, the policy and the role, and (unless --keep-wiring)
                   the subscription, the queues and the topic; what is not there is 'already gone'.
  deploy key       a CAM sub-user (BatchAutoretry-NAME, no console login) with an API key and one
                   policy (BatchAutoretry-NAME-key): the role's of `deploy scf` but for SCF's
                   InvokeFunction. The key is written to --key-file (mode 0600) when the user is
                   made, never printed; CAM cannot show it again, so a second run makes no new one.
  deploy teardown-key  the policy, then the sub-user and its key.

--dry-run prints every call: reads are made (they show what would change), changes are not.
Needs the deploy extra (pip install -r requirements-deploy.txt) and the deployer's key in
TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY. Every API call goes to --endpoint when set
(default $AUTORETRY_DEPLOY_ENDPOINT; the emulator, say), else to Tencent's.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import re
import secrets
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from handler.commands import EXIT_STATUS, Refused, UsageError, checked_region, one_line, sqlite_path

if TYPE_CHECKING:
    from handler.deploy.cloud import Cloud

PROG = "python -m handler deploy"
ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "scf" / "build.py"
FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,58}[A-Za-z0-9]$")  # CreateFunction's rule
QUEUE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,50}$")  # 64 with "-dead-letters" appended
MAX_ZIP = 20 * 1024 * 1024  # UpdateFunctionCode's ZipFile: up to 20 MB (SDK model)
NO_LEDGER_ID = "<the identity ledger init prints>"


def _say(line: str) -> None:
    print(line, flush=True)


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS, formatter_class=raw)
    sub = ap.add_subparsers(dest="cmd", required=True)
    scf = sub.add_parser("scf", help="create or update the function and all it needs",
                         epilog=EXIT_STATUS, formatter_class=raw)
    scf.add_argument("--store", default=os.environ.get("AUTORETRY_STORE"),
                     help="the ledger the function uses, e.g. redis://:password@10.0.0.12:6379/0 "
                          "(default $AUTORETRY_STORE)")
    scf.add_argument("--ledger-id", help="the ledger's identity, when the store cannot be reached "
                                         "from here (`python -m handler ledger init` prints it)")
    scf.add_argument("--package", metavar="ZIP", help="the function's zip (default: built with "
                                                      "deploy/scf/build.py into build/scf)")
    scf.add_argument("--function-url", action="store_true",
                     help="add a function URL (auth: AUTORETRY_AUTH_TOKEN, from $AUTORETRY_AUTH_TOKEN"
                          " or generated once and kept)")
    scf.add_argument("--policy", metavar="FILE", help="a policy file, given inline as AUTORETRY_POLICY")
    scf.add_argument("--tag-jobs", action="store_true",
                     help="write the retries each job spent onto it as a tag (AUTORETRY_ACCOUNT_UIN;"
                          " adds tag:TagResources to the role)")
    scf.add_argument("--vpc-id", help="the VPC of the store (with --subnet-id)")
    scf.add_argument("--subnet-id")
    scf.add_argument("--memory", type=int, default=256, help="MB: 64, or 128 to 3072 in steps of 128")
    scf.add_argument("--timeout", type=int, default=120, help="seconds, 1 to 900 (default 120)")
    td = sub.add_parser("teardown", help="delete what `deploy scf` made",
                        epilog=EXIT_STATUS, formatter_class=raw)
    td.add_argument("--keep-wiring", action="store_true",
                    help="keep the subscription, the queues and the topic")
    key = sub.add_parser("key", help="a CAM sub-user's key for the function outside Tencent "
                                     "(AWS Lambda), allowed only what the function calls",
                         epilog=EXIT_STATUS, formatter_class=raw)
    key.add_argument("--key-file", metavar="PATH",
                     help="where a new key is written, mode 0600, as the JSON the function's secret "
                          'store holds: {"SecretId": ..., "SecretKey": ...} (never over a file that '
                          "exists)")
    key.add_argument("--tag-jobs", action="store_true",
                     help="the function writes the retries each job spent onto it as a tag (adds "
                          "tag:TagResources to the key's policy)")
    td_key = sub.add_parser("teardown-key", help="delete what `deploy key` made: the policy, the "
                                                 "sub-user and its key",
                            epilog=EXIT_STATUS, formatter_class=raw)
    for p in (scf, td, key):
        p.add_argument("--region", default=(os.environ.get("AUTORETRY_REGION") or "ap-guangzhou")
                       .split(",")[0].strip(), help="default: the first of $AUTORETRY_REGION")
        p.add_argument("--queue", default=os.environ.get("AUTORETRY_QUEUE") or "batch-autoretry",
                       help="the queue the function pulls (default $AUTORETRY_QUEUE or "
                            "batch-autoretry)")
    for p in (scf, td):
        p.add_argument("--name", default="batch-autoretry", help="the function's name")
        p.add_argument("--topic", default="batch-events")
    for p in (key, td_key):
        p.add_argument("--name", default="batch-autoretry",
                       help="the deployment's name: the sub-user is BatchAutoretry-NAME")
    for p in (scf, td, key, td_key):
        p.add_argument("--endpoint", default=os.environ.get("AUTORETRY_DEPLOY_ENDPOINT") or None,
                       help="host[:port] of every API (default $AUTORETRY_DEPLOY_ENDPOINT, else "
                            "Tencent's)")
        p.add_argument("--protocol", choices=("https", "http"),
                       default=os.environ.get("AUTORETRY_DEPLOY_PROTOCOL") or "https")
        p.add_argument("--dry-run", action="store_true", help="print every call; change nothing")
    return ap


@one_line(PROG)
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    from handler.deploy.cloud import CallFailed

    try:
        if args.cmd == "scf":
            _check_scf(args)
            deploy(args)
        elif args.cmd == "teardown":
            teardown(args)
        elif args.cmd == "key":
            _check_key(args)
            key(args)
        else:
            teardown_key(args)
    except CallFailed as e:
        raise Refused(e.line()) from None
    return 0


def _check(args: argparse.Namespace) -> None:
    if hasattr(args, "region"):
        checked_region(args.region)
    if not FUNCTION_NAME.match(args.name):
        raise UsageError(f"--name {args.name!r}: expected 2 to 60 letters, digits, - or _, starting "
                         "with a letter and ending with a letter or digit")
    for option, value in (("--queue", getattr(args, "queue", None)),
                          ("--topic", getattr(args, "topic", None))):
        if value is not None and not QUEUE_NAME.match(value):
            raise UsageError(f"{option} {value!r}: expected a letter, then up to 50 letters, digits, "
                             "- or _")
    if args.endpoint and not re.match(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$", args.endpoint):
        raise UsageError(f"--endpoint {args.endpoint!r}: expected host or host:port")
    if args.protocol not in ("https", "http"):
        raise UsageError(f"AUTORETRY_DEPLOY_PROTOCOL={args.protocol!r}: expected https or http")


def _check_scf(args: argparse.Namespace) -> None:
    if not args.store or not args.store.strip():
        raise UsageError("--store: the ledger the function uses is needed (or $AUTORETRY_STORE), e.g. "
                         "redis://:password@10.0.0.12:6379/0")
    args.store = args.store.strip()
    found = sqlite_path(args.store)
    if found is not None and found[1]:
        raise UsageError("--store: a relative SQLite path would be inside the function's code, which "
                         "is read-only: give an absolute one, or (shared by every instance) Redis")
    if bool(args.vpc_id) != bool(args.subnet_id):
        raise UsageError("--vpc-id and --subnet-id go together: the function joins that subnet")
    if not (args.memory == 64 or (128 <= args.memory <= 3072 and args.memory % 128 == 0)):
        raise UsageError(f"--memory {args.memory}: expected 64, or 128 to 3072 in steps of 128")
    if not 1 <= args.timeout <= 900:
        raise UsageError(f"--timeout {args.timeout}: expected 1 to 900 seconds")
    if args.ledger_id is not None and not args.ledger_id.strip():
        raise UsageError("--ledger-id: expected the identity `python -m handler ledger init` prints")


def _check_key(args: argparse.Namespace) -> None:
    if not args.key_file or not args.key_file.strip():
        raise UsageError("--key-file PATH: where the new key is written is needed (it is never "
                         "printed), e.g. --key-file tencent-key.json")


def deploy(args: argparse.Namespace) -> None:
    from handler.commands.wire import show_notifications_block
    from handler.deploy.cloud import Cloud
    from handler.deploy.documents import role_policy
    from handler.deploy.function import (
        Function,
        ensure_function,
        get_function,
        kept_variables,
        variables_of,
    )
    from handler.deploy.role import ensure_role
    from handler.deploy.triggers import TIMERS, URL, ensure_triggers
    from handler.deploy.wiring import ensure_wiring

    policy = _policy_text(args.policy)
    cloud = Cloud(args.region, args.endpoint, args.protocol, args.dry_run, _say)  # the key, first
    code = _package(args.package)
    if args.dry_run:
        _say("dry run: every call is printed; reads are made, changes are not")
    if sqlite_path(args.store) is not None:
        _say("note: a SQLite ledger is one machine's file: each SCF instance would have its own; use "
             "Redis (or DynamoDB) for a real deployment")
    found = get_function(cloud, args.name)
    ledger_id = args.ledger_id.strip() if args.ledger_id else _ledger_identity(
        args.store, variables_of(found), args.dry_run)
    uin, appid = _account(cloud, args.region)
    role = ensure_role(cloud, args.name, role_policy(args.region, uin, args.queue, args.name,
                                                     args.tag_jobs))
    environment = {"AUTORETRY_STORE": args.store, "AUTORETRY_REGION": args.region,
                   "AUTORETRY_QUEUE": args.queue, "AUTORETRY_LEDGER_ID": ledger_id,
                   "AUTORETRY_QUEUE_NETWORK": "vpc" if args.vpc_id else "public"}
    if args.function_url:
        environment["AUTORETRY_AUTH_TOKEN"] = _token(variables_of(found))
    if policy is not None:
        environment["AUTORETRY_POLICY"] = policy
    if args.tag_jobs:
        environment["AUTORETRY_ACCOUNT_UIN"] = uin
    vpc = (args.vpc_id, args.subnet_id) if args.vpc_id else None
    fn = Function(args.name, role, code, environment, args.memory, args.timeout, vpc,
                  kept_variables(found))
    ensure_function(cloud, fn, found)
    ensure_triggers(cloud, args.name, [*TIMERS, *([URL] if args.function_url else [])],
                    exists=found is not None or not args.dry_run, appid=appid)
    ensure_wiring(cloud, args.topic, args.queue)
    show_notifications_block(args.topic, args.dry_run)


def teardown(args: argparse.Namespace) -> None:
    from handler.deploy.cloud import Cloud
    from handler.deploy.function import remove_function
    from handler.deploy.role import remove_role
    from handler.deploy.wiring import remove_wiring

    cloud = Cloud(args.region, args.endpoint, args.protocol, args.dry_run, _say)
    if args.dry_run:
        _say("dry run: every call is printed; reads are made, changes are not")
    remove_function(cloud, args.name)
    remove_role(cloud, args.name)
    if args.keep_wiring:
        _say(f"wiring (topic {args.topic}, queue {args.queue}): kept (--keep-wiring)")
    else:
        remove_wiring(cloud, args.topic, args.queue)
    _say("the ledger's data stays in its store")


def key(args: argparse.Namespace) -> None:
    from handler.deploy.cloud import Cloud
    from handler.deploy.documents import key_policy
    from handler.deploy.key import ensure_key

    cloud = Cloud(args.region, args.endpoint, args.protocol, args.dry_run, _say)
    if args.dry_run:
        _say("dry run: every call is printed; reads are made, changes are not")
    uin, _appid = _account(cloud, args.region)
    ensure_key(cloud, args.name, key_policy(args.region, uin, args.queue, args.tag_jobs),
               Path(args.key_file.strip()))
    if args.tag_jobs:
        _say(f"--tag-jobs: the function tags jobs when its environment has AUTORETRY_ACCOUNT_UIN={uin}")


def teardown_key(args: argparse.Namespace) -> None:
    from handler.deploy.cloud import Cloud
    from handler.deploy.key import remove_key

    # CAM is global: no region.
    cloud = Cloud("", args.endpoint, args.protocol, args.dry_run, _say)
    if args.dry_run:
        _say("dry run: every call is printed; reads are made, changes are not")
    remove_key(cloud, args.name)


def _account(cloud: Cloud, region: str) -> tuple[str, str]:
    """The owner's UIN, which resource names carry (the deployer may be a sub-user), and AppId."""
    account = cloud.cam("GetUserAppId", {})
    uin, appid = str(account.get("OwnerUin") or account.get("Uin")), str(account.get("AppId"))
    _say(f"account {uin} (AppId {appid}), region {region}")
    return uin, appid


def _token(current: dict[str, str]) -> str:
    """The function URL's token: the deployer's $AUTORETRY_AUTH_TOKEN, else the one the function
    has, else a new one (said, never shown)."""
    from handler.config import env_secret

    token = env_secret(os.environ, "AUTORETRY_AUTH_TOKEN") or current.get("AUTORETRY_AUTH_TOKEN")
    if token:
        return token
    _say("AUTORETRY_AUTH_TOKEN: generated for the function URL (not shown: read it in the function's "
         "environment in the SCF console, or set $AUTORETRY_AUTH_TOKEN and deploy again)")
    return secrets.token_urlsafe(32)


def _policy_text(file: str | None) -> str | None:
    """The policy file's text, checked as the function would check it."""
    if file is None:
        return None
    from handler.policy.loader import PolicyError, parse_policy

    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--policy {file}: cannot be read ({e})") from None
    try:
        parse_policy(text, str(path))
    except PolicyError as e:
        raise UsageError(f"--policy {file}: {e}") from None
    return text


def _package(file: str | None) -> bytes:
    """The zip's bytes: --package, or one built now (reproducible: the same inputs, the same zip)."""
    if file is None:
        if not BUILD.is_file():
            raise UsageError(f"--package ZIP: no {BUILD} here to build one with")
        spec = importlib.util.spec_from_file_location("scf_build", BUILD)
        assert spec is not None and spec.loader is not None
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
        path = Path(build.build(ROOT / "build" / "scf"))
        file = str(path)
    else:
        path = Path(file)
    try:
        data = path.read_bytes()
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise UsageError(f"--package {file}: not a zip ({e})") from None
    if "index.py" not in names:
        raise UsageError(f"--package {file}: no index.py at its root (the handler is "
                         "index.main_handler; deploy/scf/build.py makes such a zip)")
    if len(data) > MAX_ZIP:
        raise UsageError(f"--package {file}: {len(data) / 1e6:.1f} MB; SCF's UpdateFunctionCode "
                         f"takes a zip up to {MAX_ZIP // (1024 * 1024)} MB")
    return data


def _ledger_identity(store_url: str, current: dict[str, str], dry_run: bool) -> str:
    """What `ledger init` gives on the store: its identity, written first if it has none. Held to
    the identity the function runs with, when it already runs on this store: a ledger that forgot
    it, or another ledger at the same address, is refused rather than silently adopted."""
    from handler.ledger import Ledger, describe_store, open_store
    from handler.ledger.identity import ADOPT_COMMAND, LedgerForgot

    shown = describe_store(store_url)
    expected = (current.get("AUTORETRY_LEDGER_ID")
                if current.get("AUTORETRY_STORE") == store_url else None)
    found = sqlite_path(store_url)
    if dry_run and found is not None and not os.path.exists(found[0]):
        _say(f"ledger {shown}: would be initialised (ledger init)")
        return NO_LEDGER_ID
    try:
        store = open_store(store_url)
    except ValueError as e:
        raise UsageError(f"--store: {e}") from None
    forgot = Refused(f"ledger {shown} has no identity, while the function runs with "
                     f"AUTORETRY_LEDGER_ID={expected}: it forgot (docs/ledger.md). If it is the "
                     f"function's store, `{ADOPT_COMMAND}` against it accepts it as it is; then "
                     "deploy again with --ledger-id set to the identity it prints")
    try:
        ledger = Ledger(store)
        before = ledger.identity()
        if expected is not None and before is not None and before != expected:
            raise Refused(f"ledger {shown} is ledger {before}, while the function runs with "
                          f"AUTORETRY_LEDGER_ID={expected}: if it is the function's store now, "
                          f"deploy again with --ledger-id {before}")
        if dry_run:
            if before is None and expected is not None:
                raise forgot
            _say(f"ledger {shown}: " + ("would be initialised (ledger init)" if before is None
                                         else f"up to date, identity {before}"))
            return before or NO_LEDGER_ID
        try:
            identity = ledger.init_identity(expected=expected)
        except LedgerForgot:
            raise forgot from None
    finally:
        store.close()
    _say(f"ledger {shown}: {'initialised' if before is None else 'up to date'}, identity {identity}")
    return identity


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
