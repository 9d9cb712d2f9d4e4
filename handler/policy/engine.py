"""A policy made of ordered rules: the first rule whose conditions all hold decides.

Before any rule: a failure older than `limits.max_failure_age` is skipped (`too_old`), and a job
disabled by its override is skipped (`disabled_by_tag`). After a match the action sets the counter
the retry spends, its cap, and its backoff; the ledger enforces cap and fleet budget atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from handler.jobs import FailureKey, JobDetail, JobView
from handler.policy import BUDGET, Action, Failure, FleetBudget, JobHistory, RetryDecision
from handler.policy.backoff import backoff_delay, seeded_rng
from handler.policy.durations import format_duration
from handler.policy.overrides import JobOverrides, read_overrides
from handler.policy.rules import Backoff, PolicyFile, Rule

log = logging.getLogger("batch-autoretry.policy")


@dataclass(frozen=True)
class RuleLine:
    """One rule as explain shows it: matched, not matched (with the first failing condition), or not
    reached because an earlier check decided."""

    index: int
    name: str
    action: str
    status: str  # "matched" | "no" | "shadowed" (matches after the winner) | "not reached" | "forced"
    why: str = ""


@dataclass
class Explanation:
    decision: RetryDecision
    checks: list[str] = field(default_factory=list)  # what happened before the rules
    rules: list[RuleLine] = field(default_factory=list)
    winner: str | None = None
    details_needed: bool = False  # would decide() have called DescribeJob / DescribeTask?


class _NeedsDetails(Exception):
    """Raised by the sweep's probe when a rule would need DescribeJob: the failure is in scope."""


def _no_details() -> JobDetail:
    raise _NeedsDetails


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class RulesPolicy:
    """The policy a file describes (see docs/policy.md)."""

    def __init__(self, spec: PolicyFile, source: str = "inline policy") -> None:
        self.spec, self.source = spec, source
        limits = spec.limits
        self.max_attempts = limits.max_attempts  # read by `python -m handler ledger show`
        self.max_failure_age_s = limits.max_failure_age
        self.fleet = (FleetBudget(limits.fleet_budget.max_retries, limits.fleet_budget.window)
                      if limits.fleet_budget else None)
        self._rules = {r.name: r for r in spec.rules}

    @property
    def needs_details(self) -> bool:
        """True if some rule may need DescribeJob / DescribeTask to be checked."""
        return any(r.when.needs_details for r in self.spec.rules)

    def decide(self, failure: Failure) -> RetryDecision:
        return self._evaluate(failure, trace=False).decision

    def in_scope(self, view: JobView) -> bool:
        """For the sweep: False only if this failure, seen without a notice, would certainly be
        skipped by a rule or the default — decided from the listing alone, no API call. Such a
        failure is not enqueued (and so not recorded as skipped: a late notice whose event vars
        match a rule still gets its retry)."""
        if not view.EndTime:
            return True
        probe = Failure(key=FailureKey("-", view.JobId, view.EndTime), job=view, history=JobHistory(),
                        event_name=None, event_vars={}, now=_epoch(view.EndTime),
                        fetch_details=_no_details)
        try:
            decision = self._evaluate(probe, trace=False, quiet=True).decision
        except _NeedsDetails:
            return True
        return decision.action != Action.SKIP

    def explain(self, failure: Failure) -> Explanation:
        """The decision, and for every rule whether it matched and, if not, why not."""
        return self._evaluate(failure, trace=True)

    # ---- the evaluation ------------------------------------------------------------------------

    def _evaluate(self, failure: Failure, trace: bool, quiet: bool = False) -> Explanation:
        out = Explanation(RetryDecision.skip("default", "not evaluated"))
        age = failure.now - _epoch(failure.key.end_time)
        if age > self.max_failure_age_s:
            out.decision = RetryDecision.skip(
                "max_failure_age", f"too_old: failure ended {format_duration(round(age))} ago; "
                f"limit {format_duration(self.max_failure_age_s)}")
            out.checks.append(f"max_failure_age: {out.decision.reason}")
            return self._rest_not_reached(out, trace)
        ov = read_overrides(failure.job.Tags, failure.event_vars,
                            use_tags=self.spec.overrides.tags,
                            use_event_vars=self.spec.overrides.event_vars, rule_names=self._rules)
        for note in [] if quiet else ov.ignored:
            log.warning("policy override ignored",
                        extra={"fields": {"job": failure.key.job_id, "ignored": note}})
            out.checks.append(f"override ignored: {note}")
        notes = "".join(f"; ignored {n}" for n in ov.ignored)
        if ov.disabled_by:
            out.decision = RetryDecision.skip("override", f"disabled_by_tag: {ov.disabled_by}{notes}")
            out.checks.append(f"override: {ov.disabled_by} → SKIP")
            return self._rest_not_reached(out, trace)
        if ov.rule is not None:
            rule = self._rules[ov.rule]
            out.checks.append(f"override: {ov.rule_by} → rule {rule.name!r} applies without its "
                              "conditions")
            out.winner = rule.name
            out.decision = self._act(rule, failure, ov, notes)
            return self._rest_not_reached(out, trace, forced=rule.name)
        for i, rule in enumerate(self.spec.rules):
            if out.winner is not None and not trace:
                break
            verdict = rule.matches(failure)
            if out.winner is not None:
                status, why = ("shadowed", "matches too, but an earlier rule won") if verdict.matched \
                    else ("no", verdict.why_not or "")
                out.rules.append(RuleLine(i, rule.name, rule.action, status, why))
                continue
            out.rules.append(RuleLine(i, rule.name, rule.action, "matched" if verdict.matched else "no",
                                      verdict.why_not or ""))
            if verdict.matched:
                out.winner = rule.name
                out.details_needed = failure.details_fetched
                out.decision = self._act(rule, failure, ov, notes)
        if out.winner is None:
            out.details_needed = failure.details_fetched
            out.decision = self._default(failure, ov, notes)
        return out

    def _rest_not_reached(self, out: Explanation, trace: bool, forced: str | None = None) -> Explanation:
        if trace:
            out.rules = [RuleLine(i, r.name, r.action, "forced" if r.name == forced else "not reached")
                         for i, r in enumerate(self.spec.rules)]
        return out

    # ---- what a match does -----------------------------------------------------------------------

    def _default(self, failure: Failure, ov: JobOverrides, notes: str) -> RetryDecision:
        d = self.spec.default
        if d.action == "SKIP":
            return RetryDecision.skip("default", d.reason + notes)
        cap, cap_note = self._budget_cap(None, ov)
        return self._retry("default", d.reason, failure, BUDGET, cap, cap_note,
                           self.spec.limits.backoff, notes)

    def _act(self, rule: Rule, failure: Failure, ov: JobOverrides, notes: str) -> RetryDecision:
        if rule.action == "SKIP":
            return RetryDecision.skip(rule.name, (rule.reason or "skipped by rule") + notes)
        backoff = self.spec.limits.backoff.merged(rule.backoff)
        if rule.action == "RETRY":
            cap, cap_note = self._budget_cap(rule, ov)
            return self._retry(rule.name, rule.reason, failure, BUDGET, cap, cap_note, backoff, notes)
        cap = rule.max_uncounted if rule.max_uncounted is not None else self.spec.limits.max_uncounted
        return self._retry(rule.name, rule.reason, failure, rule.counter_name, cap, "", backoff,
                           notes)

    def _budget_cap(self, rule: Rule | None, ov: JobOverrides) -> tuple[int, str]:
        if ov.max_attempts is not None:
            return ov.max_attempts, f" (cap from {ov.max_attempts_by})"
        if rule is not None and rule.max_attempts is not None:
            return rule.max_attempts, ""
        return self.spec.limits.max_attempts, ""

    def _retry(self, rule: str, why: str | None, failure: Failure, counter: str, cap: int,
               cap_note: str, backoff: Backoff, notes: str) -> RetryDecision:
        spent = failure.history.spent(counter)
        kind = "retry" if counter == BUDGET else f"{counter} retry"
        if spent >= cap:
            limit = "max_attempts" if counter == BUDGET else "max_uncounted"
            return RetryDecision.skip(rule, f"{limit}: {spent} of {cap} {kind.replace('retry', 'retries')}"
                                      f" spent{cap_note}{notes}")
        rng = failure.rng or seeded_rng(failure.key, counter, spent)
        delay = backoff_delay(spent, backoff.initial, backoff.factor, backoff.cap, backoff.jitter, rng)
        reason = f"{why}: " if why else ""
        reason += f"{kind} {spent + 1} of {cap}{cap_note}"
        if delay > 0:
            reason += f", due {format_duration(round(delay, 3))} after the failure"
        return RetryDecision(Action.RETRY, rule, reason + notes, delay_s=delay, counter=counter,
                             cap=cap, fleet=self.fleet)
