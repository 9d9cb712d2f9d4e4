"""What operators read: recent decisions, one job's history, and the ledger's state.

Only the store (AUTORETRY_STORE) is opened: no policy, no Batch API client. Whatever decisions a
job's record holds are shown, in the outcome words of handler.outcomes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from handler.commands import EXIT_STATUS, checked_job_id, checked_region, one_line, open_ledger
from handler.outcomes import SKIP_OUTCOMES, Outcome

if TYPE_CHECKING:
    from handler.ledger import Ledger

PROG = "python -m handler ledger"

# One line per outcome word, for --help and `ledger show`. Kept complete by a test: a new word in
# handler.outcomes without a meaning here fails it.
MEANING: dict[Outcome, str] = {
    Outcome.RETRIED: "RetryJobs accepted the job",
    Outcome.CONFIRMED: "the job left a failure after an earlier call whose answer was lost",
    Outcome.SKIPPED: "a policy rule said SKIP",
    Outcome.MAX_ATTEMPTS: "the job's retry budget is spent",
    Outcome.BUDGET_EXHAUSTED: "the fleet's retry budget for this window is spent",
    Outcome.REJECTED: "the API refused the job (the reason names its error)",
    Outcome.NOT_FOUND: "DescribeJobs does not know the job",
    Outcome.NOT_FAILED: "the job is not FAILED (running again, or succeeded)",
    Outcome.DUPLICATE: "this failure was decided already",
    Outcome.HELD: "the operator holds the job (`hold`, `terminate`): this failure is not retried",
    Outcome.DEFERRED: "a backoff: due later",
    Outcome.IN_FLIGHT: "another instance holds the failure's claim",
    Outcome.AMBIGUOUS: "RetryJobs' answer was lost; the job is re-read before anything else",
    Outcome.RELEASED: "a claim given back: the call was certainly not made",
    Outcome.CLAIMED: "a claim taken; the RetryJobs call is under way",
    Outcome.DRY_RUN: "AUTORETRY_DRY_RUN: the decision was RETRY, nothing was called",
}
RETRY_OUTCOMES = frozenset({Outcome.RETRIED, Outcome.CONFIRMED})
_WORDS = frozenset(o.value for o in Outcome)
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z?(#\d+)?$")


def outcome_word(outcome: str) -> str:
    """The word a stored outcome starts with: "released: throttled (...)" -> "released"."""
    found = re.match(r"[a-z_]+", outcome)
    return found[0] if found else outcome


def _detail(outcome: str) -> str:
    return outcome[len(outcome_word(outcome)):].lstrip(" :")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _since(text: str) -> float:
    from handler.policy.durations import parse_duration

    try:
        return time.time() - parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _outcomes_help() -> str:
    width = max(len(o) for o in Outcome)
    return "outcomes (the word before any detail):\n" + "\n".join(
        f"  {o.value:{width}}  {MEANING[o]}" for o in Outcome) + "\n\n" + EXIT_STATUS


def _check(args: argparse.Namespace) -> None:
    """A job id or region that cannot be one: refused, rather than answered 'no record'."""
    job = getattr(args, "job_id", None) or getattr(args, "job", None)
    if job is not None:
        checked_job_id(job)
    region = getattr(args, "region", None)
    if region is not None:
        checked_region(region)


def decisions(ledger: Ledger, job: str | None = None, outcome: str | None = None,
              since: float = 0.0) -> list[dict[str, Any]]:
    rows = []
    for jv in ledger.jobs():
        if job and jv.get("job_id") != job:
            continue
        for d in jv.get("decisions", []):
            if outcome and outcome_word(str(d.get("outcome", ""))) != outcome:
                continue
            # A decision counts from when it was made or, if later, when it was settled or seen again.
            latest = max(float(d.get(k) or 0) for k in
                         ("at", "settled_at", "last_duplicates_at", "last_repeats_at"))
            if latest < since:
                continue
            rows.append({"job": jv["job_id"], "region": jv["region"], **d})
    return sorted(rows, key=lambda r: float(r.get("at") or 0), reverse=True)


def stats(ledger: Ledger) -> dict[str, Any]:
    from handler.ledger import FailureState

    now = time.time()
    queue = list(ledger.queue())
    failures = list(ledger.failures())
    recent = decisions(ledger, since=now - 3600)
    skips: dict[str, int] = {}
    for d in recent:
        word = outcome_word(str(d.get("outcome", "")))
        if word in SKIP_OUTCOMES:
            skips[word] = skips.get(word, 0) + 1
    return {
        "queue_depth": len(queue),
        "queue_due_now": sum(1 for e in queue if e.due_at <= now),
        "queue_leased": sum(1 for e in queue if e.lease_until > now),
        "leases_held": sum(1 for _, f in failures
                           if f["state"] in (FailureState.CLAIMED, FailureState.AMBIGUOUS)
                           and float(f.get("lease_until") or 0) > now),
        "ambiguous": sum(1 for _, f in failures if f["state"] == FailureState.AMBIGUOUS),
        "retries_last_hour": sum(1 for d in recent
                                 if outcome_word(str(d.get("outcome", ""))) in RETRY_OUTCOMES),
        "skips_last_hour": sum(skips.values()),
        "skips_by_outcome_last_hour": dict(sorted(skips.items())),
        "failures_known": len(failures),
        **_notification_counts(ledger),
    }


def _notification_counts(ledger: Ledger) -> dict[str, int]:
    """Give-up messages still waiting for a channel, and those it gave up on (handler.notify)."""
    from handler.notify.outbox import EXPIRED, PENDING, Outbox

    counts = Outbox(ledger.store).counts()
    return {"notifications_pending": counts[PENDING], "notifications_expired": counts[EXPIRED]}


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=_outcomes_help(),
                                 formatter_class=raw)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="recent decisions, newest first", epilog=_outcomes_help(),
                        formatter_class=raw)
    ls.add_argument("--job", help="only this job id")
    ls.add_argument("--outcome", choices=[o.value for o in Outcome], metavar="OUTCOME",
                    help="only decisions ending in this word (listed below)")
    ls.add_argument("--since", type=_since, default=0.0, metavar="DURATION",
                    help="only decisions of the last DURATION, e.g. 30m, 2h, 1d, 1h30m")
    ls.add_argument("--limit", type=_count, default=50, help="at most this many rows (default 50)")
    ls.add_argument("--json", action="store_true", help="the stored records, as JSON")
    show = sub.add_parser("show", help="one job's history: each decision with its rule and reason",
                          epilog=_outcomes_help(), formatter_class=raw)
    show.add_argument("job_id")
    show.add_argument("--region", help="the job's region (default: the first of AUTORETRY_REGION)")
    show.add_argument("--json", action="store_true", help="the stored record, as JSON")
    st = sub.add_parser("stats", help="queue depth, leases held, retries and skips in the last hour",
                        epilog=EXIT_STATUS, formatter_class=raw)
    st.add_argument("--json", action="store_true")
    init = sub.add_parser("init", help="write the ledger's identity once and print it (the value of "
                                       "AUTORETRY_LEDGER_ID); again, it prints the same one",
                          epilog=EXIT_STATUS, formatter_class=raw)
    init.add_argument("--adopt", action="store_true",
                      help="accept a ledger that forgot (lost its identity) as this deployment's: "
                           "writes a new identity, to set as AUTORETRY_LEDGER_ID")
    return ap


@one_line(PROG)
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    _check(args)
    if args.cmd == "init":
        from handler.config import Config
        from handler.ledger.setup import init_command

        config = Config.from_env()
        return init_command(config.store, args.adopt, config.ledger_id)
    ledger, default_region = open_ledger()
    try:
        if args.cmd == "list":
            return _list(ledger, args)
        if args.cmd == "show":
            return _show(ledger, args.job_id, args.region or default_region, args.json)
        return _stats(ledger, args.json)
    finally:
        ledger.store.close()


def _list(ledger: Ledger, args: argparse.Namespace) -> int:
    rows = decisions(ledger, args.job, args.outcome, args.since)[: args.limit]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'time (UTC)':20} {'job':14} {'outcome':16} {'rule':16} reason")
    for r in rows:
        outcome = str(r.get("outcome", ""))
        print(f"{_when(r.get('at')):20} {r['job']:14} {outcome_word(outcome):16.16} "
              f"{r.get('rule', '')!s:16.16} {_reason(r)}")
    return 0


def _reason(d: dict[str, Any]) -> str:
    """The decision's reason in words, with the outcome's detail and how often it was seen again."""
    parts = [str(d.get("reason") or "")]
    detail = _detail(str(d.get("outcome", "")))
    if detail:
        parts.append(detail)
    failure = failure_of(str(d.get("key", "")))
    if failure:
        parts.append(f"failure of {failure}")
    text = "; ".join(p for p in parts if p)
    dups, repeats = int(d.get("duplicates") or 0), int(d.get("repeats") or 0)
    if dups:
        text += f" (+{dups} duplicate notice{'s' if dups != 1 else ''} absorbed)"
    if repeats:
        text += f" (seen {repeats} more time{'s' if repeats != 1 else ''})"
    return text


def failure_of(key: str) -> str | None:
    """The failure's EndTime from a failure key `region/job/EndTime[#n]`; None for a decision kept
    on the job rather than on one failure (not found, not failed)."""
    parts = key.split("/", 2)
    return parts[2] if len(parts) == 3 and _TIME.match(parts[2]) else None


def _show(ledger: Ledger, job_id: str, region: str, as_json: bool) -> int:
    from handler.jobs import JobRef

    jv = ledger.job(JobRef(region, job_id))
    hold = ledger.hold_on(JobRef(region, job_id))
    if jv is None and hold is None:
        print(f"no record of {region}/{job_id} (kept for AUTORETRY_RETENTION_HOURS after its last "
              "decision; see `python -m handler ledger list`)")
        return 1
    if as_json:
        print(json.dumps({**(jv or {}), **({"hold": hold.value()} if hold else {})}, indent=2))
        return 0
    print(f"job {job_id} in {region}")
    if hold is not None:
        print(f"held since {_when(hold.since)} UTC (`{hold.command}`): {hold.reason}; none of its "
              "failures is retried until `python -m handler release`")
    if jv is None:
        print("no failure seen yet")
        return 0
    counters = {k: int(v) for k, v in (jv.get("counters") or {}).items() if int(v)}
    spent = ", ".join(f"{v} on {k}" for k, v in sorted(counters.items())) or "none"
    print(f"retries spent: {spent}")
    for key in jv.get("pending") or []:
        print(f"awaiting the outcome of a RetryJobs call: failure of {failure_of(key) or key}")
    history = sorted(jv.get("decisions") or [], key=lambda d: float(d.get("at") or 0))
    if not history:
        return 0
    print(f"\n{'time (UTC)':20} {'outcome':16} {'rule':16} reason")
    for d in history:
        print(f"{_when(d.get('at')):20} {outcome_word(str(d.get('outcome', ''))):16.16} "
              f"{d.get('rule', '')!s:16.16} {_reason(d)}")
    words = dict.fromkeys(outcome_word(str(d.get("outcome", ""))) for d in history)
    print()
    for word in words:
        meaning = MEANING.get(Outcome(word)) if word in _WORDS else None
        print(f"{word}: {meaning or 'an outcome this version does not know'}")
    _show_notifications(ledger, region, job_id)
    return 0


def _show_notifications(ledger: Ledger, region: str, job_id: str) -> None:
    """The job's give-up messages: each one's state, and what each channel did with it."""
    from handler.notify.notifier import MAX_REFUSALS
    from handler.notify.outbox import Outbox

    messages = Outbox(ledger.store).of_job(region, job_id)
    if not messages:
        return
    print("\ngive-up messages:")
    for m in messages:
        print(f"failure of {failure_of(str(m['failure_key'])) or m['failure_key']}: "
              f"{_message_state(m)}")
        done = [str(c) for c in m.get("done") or []]
        refusals = {str(k): int(v) for k, v in (m.get("refusals") or {}).items()}
        abandoned = {str(c) for c in m.get("abandoned") or []}
        for channel in dict.fromkeys([*done, *sorted(abandoned), *sorted(refusals)]):
            if channel in done:
                said = "took it"
            elif channel in abandoned:
                said = f"given up: it refused the message {MAX_REFUSALS} times"
            else:
                said = f"refused it {refusals[channel]} time{'s' if refusals[channel] != 1 else ''}"
            print(f"  {channel:10} {said}")
        if m.get("last_error") and m.get("state") != "sent":
            print(f"  last error: {m['last_error']}")


def _message_state(m: dict[str, Any]) -> str:
    state, failed = str(m.get("state")), int(m.get("attempts") or 0)
    tries = f"{failed} failed tr{'ies' if failed != 1 else 'y'}"
    if state == "pending":
        return f"pending ({tries}), next try at {_when(float(m.get('next_at') or 0))} UTC"
    if state == "sent":
        return f"sent at {_when(float(m.get('sent_at') or 0))} UTC"
    if state == "expired":
        return f"expired unsent ({tries}): given up"
    return state


def _stats(ledger: Ledger, as_json: bool) -> int:
    figures = stats(ledger)
    if as_json:
        print(json.dumps(figures, indent=2))
        return 0
    for k, v in figures.items():
        if isinstance(v, dict):
            v = ", ".join(f"{word} {n}" for word, n in v.items()) or "none"
        print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
