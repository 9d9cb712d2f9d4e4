"""A policy made of ordered rules: the first rule whose conditions all hold decides.

Before any rule: a failure older than `limits.max_failure_age` is skipped (`too_old`), a job
disabled by its override is skipped (`disabled_by_tag`), and so is a failure whose details (when
a rule made the retrier read them) say TerminateJob caused it (`terminated_by_user`). After a
match the action sets the counter the retry spends, its cap, and its backoff; the ledger enforces
cap and fleet budget atomically, so a RETRY decision is made whatever the counters say (its
reason tells people where they stand).
The policy logs nothing: override values it ignored travel on the decision as `notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from handler.jobs import FailureKey, JobView
from handler.policy import (
    BUDGET,
    Action,
    DetailsMissing,
    Failure,
    FleetBudget,
    JobHistory,
    RetryDecision,
    failure_age_s,
    retry_words,
    terminated_by_user,
)
from handler.policy.backoff import backoff_delay, seeded_rng
from handler.policy.durations import format_duration
from handler.policy.overrides import JobOverrides, apply_cap, read_overrides
from handler.policy.rules import Backoff, PolicyFile, Rule


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
    details_needed: bool = False  # would the retrier have read DescribeJob / DescribeTask?


class RulesPolicy:
    """The policy a file describes (see docs/policy.md)."""

    def __init__(self, spec: PolicyFile, source: str = "inline policy") -> None:
        self.spec, self.source = spec, source
        limits = spec.limits
        self.max_attempts = limits.max_attempts  # read by `python -m handler ledger show`
        self.max_failure_age_s = limits.max_failure_age
        self.fleet = (FleetBudget(limits.fleet_budget.max_retries, limits.fleet_budget.window)
                      if limits.fleet_budget else None)
        self.notify_outcomes: frozenset[str] | None = (
            frozenset(spec.notify.outcomes) if spec.notify is not None else None)
        self._rules = {r.name: r for r in spec.rules}

    def decide(self, failure: Failure) -> RetryDecision:
        """Raises DetailsMissing if a rule reached needs details and `failure.details` is None."""
        return self._evaluate(failure, trace=False).decision

    def wants_details(self, failure: Failure) -> bool:
        """True when the first rule that could still match on what is known needs DescribeJob /
        DescribeTask, and `failure.details` is None."""
        if failure.details is not None:
            return False
        try:
            self._evaluate(failure, trace=False)
        except DetailsMissing:
            return True
        return False

    def in_scope(self, view: JobView) -> bool:
        """For the sweep: False only if this failure, seen without a notice, would certainly be
        skipped by a rule or the default — decided from the listing alone, no API call. Such a
        failure is not enqueued (and so not recorded as skipped: a late notice whose event vars
        match a rule still gets its retry)."""
        end = view.end_epoch
        if end is None or not view.EndTime:
            return True  # the flush reads the job again and says why it cannot be keyed
        probe = Failure(key=FailureKey("-", view.JobId, view.EndTime), job=view, history=JobHistory(),
                        event_name=None, event_vars={}, now=end)
        if self.wants_details(probe):
            return True
        return self.decide(probe).action != Action.SKIP

    def explain(self, failure: Failure) -> Explanation:
        """The decision, and for every rule whether it matched and, if not, why not."""
        out = self._evaluate(failure, trace=True)
        out.details_needed = self.wants_details(replace(failure, details=None))
        return out

    # ---- the evaluation ------------------------------------------------------------------------

    def _evaluate(self, failure: Failure, trace: bool) -> Explanation:
        out = Explanation(RetryDecision.skip("default", "not evaluated"))
        age = failure_age_s(failure)
        if age is None:
            out.decision = RetryDecision.skip(
                "max_failure_age", f"bad_end_time: {failure.key.end_time[:40]!r} is not a time")
            out.checks.append(f"max_failure_age: {out.decision.reason}")
            return self._rest_not_reached(out, trace)
        if age > self.max_failure_age_s:
            out.decision = RetryDecision.skip(
                "max_failure_age", f"too_old: failure ended {format_duration(round(age))} ago; "
                f"limit {format_duration(self.max_failure_age_s)}")
            out.checks.append(f"max_failure_age: {out.decision.reason}")
            return self._rest_not_reached(out, trace)
        ov = read_overrides(failure.job.Tags, failure.event_vars,
                            use_tags=self.spec.overrides.tags,
                            use_event_vars=self.spec.overrides.event_vars, rule_names=self._rules)
        if ov.disabled_by:
            out.decision = RetryDecision.skip("override", f"disabled_by_tag: {ov.disabled_by}"
                                              + _said(ov.ignored), ov.ignored)
            out.checks.append(f"override: {ov.disabled_by} → SKIP")
            return self._rest_not_reached(out, trace)
        # What the failure's notice said, and its details where they were read anyway (a rule
        # needs them): reading them for every failure would cost a DescribeJob and a DescribeTask
        # per job.
        if (text := terminated_by_user(failure.details, failure.said)) is not None:
            out.decision = RetryDecision.skip(
                "terminated", f"terminated_by_user: {text[:120]!r} (TerminateJob)" + _said(ov.ignored),
                ov.ignored)
            out.checks.append(f"terminated: {out.decision.reason} → SKIP")
            return self._rest_not_reached(out, trace)
        if ov.rule is not None:
            rule = self._rules[ov.rule]
            out.checks.append(f"override: {ov.rule_by} → rule {rule.name!r} applies without its "
                              "conditions")
            out.winner = rule.name
            out.decision = self._act(rule, failure, ov)
            return self._rest_not_reached(out, trace, forced=rule.name)
        for i, rule in enumerate(self.spec.rules):
            if out.winner is not None and not trace:
                break
            if out.winner is not None:
                try:
                    later = rule.matches(failure)
                except DetailsMissing:  # explain without details: say so, never fetch
                    later = None
                status, why = ("shadowed", "matches too, but an earlier rule won") \
                    if later is not None and later.matched \
                    else ("no", (later.why_not or "") if later else "needs details to tell")
                out.rules.append(RuleLine(i, rule.name, rule.action, status, why))
                continue
            match = rule.matches(failure)
            out.rules.append(RuleLine(i, rule.name, rule.action, "matched" if match.matched else "no",
                                      match.why_not or ""))
            if match.matched:
                out.winner = rule.name
                out.decision = self._act(rule, failure, ov)
        if out.winner is None:
            out.decision = self._default(failure, ov)
        out.checks[:0] = [f"override ignored: {n}" for n in out.decision.notes]
        return out

    def _rest_not_reached(self, out: Explanation, trace: bool, forced: str | None = None) -> Explanation:
        out.checks[:0] = [f"override ignored: {n}" for n in out.decision.notes]
        if trace:
            out.rules = [RuleLine(i, r.name, r.action, "forced" if r.name == forced else "not reached")
                         for i, r in enumerate(self.spec.rules)]
        return out

    # ---- what a match does -----------------------------------------------------------------------

    def _default(self, failure: Failure, ov: JobOverrides) -> RetryDecision:
        d = self.spec.default
        if d.action == "SKIP":
            return RetryDecision.skip("default", d.reason + _said(ov.ignored), ov.ignored)
        return self._retry("default", d.reason, failure, BUDGET, self._budget_cap(None), ov,
                           self.spec.limits.backoff)

    def _act(self, rule: Rule, failure: Failure, ov: JobOverrides) -> RetryDecision:
        if rule.action == "SKIP":
            return RetryDecision.skip(rule.name, (rule.reason or "skipped by rule") + _said(ov.ignored),
                                      ov.ignored)
        backoff = self.spec.limits.backoff.merged(rule.backoff)
        if rule.action == "RETRY":
            return self._retry(rule.name, rule.reason, failure, BUDGET, self._budget_cap(rule), ov,
                               backoff)
        cap = rule.max_uncounted if rule.max_uncounted is not None else self.spec.limits.max_uncounted
        return self._retry(rule.name, rule.reason, failure, rule.counter_name, cap, ov, backoff)

    def _budget_cap(self, rule: Rule | None) -> int:
        if rule is not None and rule.max_attempts is not None:
            return rule.max_attempts
        return self.spec.limits.max_attempts

    def _retry(self, rule: str, why: str | None, failure: Failure, counter: str, policy_cap: int,
               ov: JobOverrides, backoff: Backoff) -> RetryDecision:
        notes = ov.ignored
        cap, source = policy_cap, None
        if counter == BUDGET:  # overrides set the job's own budget; uncounted caps are the policy's
            capped = apply_cap(policy_cap, ov)
            cap, source, notes = capped.cap, capped.source, notes + capped.ignored
        spent = failure.history.spent(counter)
        delay = 0.0
        if spent < cap:
            # Once the counter is spent the ledger refuses the claim; waiting first would only
            # delay the give-up.
            rng = failure.rng or seeded_rng(failure.key, counter, spent)
            delay = backoff_delay(spent, backoff.initial, backoff.factor, backoff.cap, backoff.jitter,
                                  rng)
        reason = f"{why}: " if why else ""
        reason += retry_words(counter, spent, cap)
        if source:
            reason += f" (cap from {source})"
        if delay > 0:
            reason += f", due {format_duration(round(delay, 3))} after the failure"
        return RetryDecision(Action.RETRY, rule, reason + _said(notes), delay_s=delay, counter=counter,
                             cap=cap, fleet=self.fleet, cap_from=source, notes=notes)


def _said(notes: tuple[str, ...]) -> str:
    return "".join(f"; ignored {n}" for n in notes)
