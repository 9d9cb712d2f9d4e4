"""What operators read: recent decisions, one job's failures, and the ledger's state."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from handler.ledger import FailureState, Ledger, StoreUnavailable

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> float:
    """`30m`, `2h`, `1d` (or seconds with `s`) before now, as an epoch time."""
    found = _SINCE.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError("expected e.g. 30m, 2h, 1d")
    return time.time() - float(found[1]) * _SINCE_UNITS[found[2]]


def _outcome_word(outcome: str) -> str:
    # Outcomes carry their detail after the word: "released: throttled (...)", "ambiguous: ...",
    # "retried (confirmed by re-read)". --outcome matches the word.
    found = re.match(r"[a-z_]+", outcome)
    return found[0] if found else outcome


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "-"


def decisions(ledger: Ledger, job: str | None = None, outcome: str | None = None,
              since: float = 0.0) -> list[dict[str, Any]]:
    rows = []
    for jv in ledger.jobs():
        if job and jv.get("job_id") != job:
            continue
        for d in jv.get("decisions", []):
            if outcome and _outcome_word(d.get("outcome", "")) != outcome:
                continue
            # A decision counts from when it was made or, if later, when its outcome was settled.
            if max(float(d.get("at") or 0), float(d.get("settled_at") or 0)) < since:
                continue
            rows.append({"job": jv["job_id"], "region": jv["region"], **d})
    return sorted(rows, key=lambda r: r["at"], reverse=True)


def stats(ledger: Ledger) -> dict[str, Any]:
    now = time.time()
    queue = list(ledger.queue())
    failures = list(ledger.failures())
    recent = [d for d in decisions(ledger, since=now - 3600)]
    return {
        "queue_depth": len(queue),
        "queue_due_now": sum(1 for e in queue if e.due_at <= now),
        "queue_leased": sum(1 for e in queue if e.lease_until > now),
        "leases_held": sum(1 for _, f in failures
                           if f["state"] in (FailureState.CLAIMED, FailureState.AMBIGUOUS)
                           and float(f.get("lease_until") or 0) > now),
        "ambiguous": sum(1 for _, f in failures if f["state"] == FailureState.AMBIGUOUS),
        "retries_last_hour": sum(1 for d in recent if _outcome_word(d.get("outcome", "")) == "retried"),
        "skips_last_hour": sum(1 for d in recent if _outcome_word(d.get("outcome", "")) == "skipped"),
        "failures_known": len(failures),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler ledger", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="recent decisions, newest first")
    ls.add_argument("--job")
    ls.add_argument("--outcome", help="retried, skipped, claimed, released, ambiguous (the word "
                                      "before any detail)")
    ls.add_argument("--since", type=_since, default=0.0, help="e.g. 30m, 2h, 1d")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="every failure of one job, each decision with its reason")
    show.add_argument("job_id")
    show.add_argument("--region")
    st = sub.add_parser("stats", help="queue depth, leases held, retries in the last hour")
    st.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    try:
        return _run(args)
    except StoreUnavailable as e:  # the message names the store, never its credentials
        print(f"ledger unavailable: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from handler.app import runtime

    rt = runtime()
    if args.cmd == "list":
        rows = decisions(rt.ledger, args.job, args.outcome, args.since)[: args.limit]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'time':20} {'job':14} {'outcome':26} {'rule':16} reason")
        for r in rows:
            print(f"{_when(r['at']):20} {r['job']:14} {r.get('outcome', ''):26.26} "
                  f"{r.get('rule', ''):16.16} {r.get('reason', '')}")
        return 0
    if args.cmd == "show":
        region = args.region or rt.config.default_region
        from handler.jobs import JobRef

        jv = rt.ledger.job(JobRef(region, args.job_id))
        if jv is None:
            print(f"no record of {region}/{args.job_id}")
            return 1
        cap = int(getattr(rt.policy, "max_attempts", 3))
        spent = int(jv.get("counters", {}).get("attempts", 0))
        print(f"job {args.job_id} ({region})")
        print(f"  retries spent: {json.dumps(jv.get('counters', {}))}; "
              f"attempts left (default budget {cap}): {max(0, cap - spent)}")
        if jv.get("pending"):
            print(f"  pending outcome: {', '.join(jv['pending'])}")
        for d in jv.get("decisions", []):
            print(f"  {_when(d.get('at'))}  failure {d['key'].split('/', 2)[2]}  "
                  f"{d.get('action', '')} -> {d.get('outcome', '')}  [{d.get('rule', '')}] "
                  f"{d.get('reason', '')}")
        return 0
    figures = stats(rt.ledger)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k:20} {v}")
    return 0
