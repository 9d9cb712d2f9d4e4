"""What the rules policy decides: one row per condition kind, action, override and limit."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from handler.jobs import JobView
from handler.policy import Action, DetailsMissing, FleetBudget
from handler.policy.engine import RulesPolicy

from .builders import as_the_retrier, failure, policy

SPOT = [("main", [(None, "Spot instance reclaimed")])]
OOM = [("main", [(137, "OOMKilled")])]
USAGE = [("main", [(2, "bad flag")])]


@dataclass
class Row:
    id: str
    rules: str  # the policy body (YAML); `version: 1` is added
    facts: dict[str, Any] = field(default_factory=dict)  # keyword arguments of failure()
    action: Action = Action.RETRY
    rule: str = "r"
    reason: str = ""  # the decision's reason starts with this
    counter: str = "attempts"
    cap: int | None = None


def one_rule(when: str, action: str = "RETRY", extra: str = "") -> str:
    return f"rules:\n  - name: r\n    when: {when}\n    action: {action}\n{extra}"


ROWS = [
    # ---- conditions: each kind holds (rule r decides) or not (the default SKIP decides) ----------
    Row("event in list", one_rule("{event: [JOB_FAILED, JOB_FAILED_INTERRUPTED]}")),
    Row("event not in list", one_rule("{event: JOB_FAILED_INTERRUPTED}"),
        action=Action.SKIP, rule="default", reason="no rule matched"),
    Row("event absent (sweep) never satisfies event", one_rule("{event: JOB_FAILED}"),
        {"event": None}, action=Action.SKIP, rule="default"),
    Row("job name glob", one_rule("{job_name: ['etl-*', 'render-*']}")),
    Row("job name glob mismatch", one_rule("{job_name: 'etl-*'}"), action=Action.SKIP, rule="default"),
    Row("job name glob is case-sensitive", one_rule("{job_name: 'RENDER-*'}"),
        action=Action.SKIP, rule="default"),
    Row("tag value glob", one_rule("{tags: {team: 'data-*'}}"), {"tags": {"team": "data-eng"}}),
    Row("tag value glob mismatch", one_rule("{tags: {team: 'data-*'}}"), {"tags": {"team": "ml"}},
        action=Action.SKIP, rule="default"),
    Row("tag present", one_rule("{tags: {owner: true}}"), {"tags": {"owner": "ann"}}),
    Row("tag present but absent", one_rule("{tags: {owner: true}}"), action=Action.SKIP, rule="default"),
    Row("tag absent", one_rule("{tags: {owner: false}}")),
    Row("tag absent but present", one_rule("{tags: {owner: false}}"), {"tags": {"owner": "x"}},
        action=Action.SKIP, rule="default"),
    Row("yaml no is text, not false", one_rule("{tags: {backup: no}}"), {"tags": {"backup": "no"}}),
    Row("event var glob", one_rule("{event_vars: {pipeline: 'nightly*'}}"),
        {"event_vars": {"pipeline": "nightly-2"}}),
    Row("event var missing", one_rule("{event_vars: {pipeline: 'nightly*'}}"),
        action=Action.SKIP, rule="default"),
    Row("job StateReason glob", one_rule("{job_reason: '*quota*'}"), {"reason": "CVM quota exceeded"}),
    Row("job StateReason glob mismatch", one_rule("{job_reason: '*quota*'}"),
        action=Action.SKIP, rule="default"),
    Row("job StateReason regex", one_rule("{job_reason_regex: '(?i)insufficient'}"),
        {"reason": "Insufficient balance"}),
    Row("job reason glob matches the StateDetailedReason too", one_rule("{job_reason: '*quota*'}"),
        {"reason": "job failed", "detailed_reason": "CVM quota exceeded in ap-guangzhou-3"}),
    Row("job reason regex matches the StateDetailedReason too",
        one_rule("{job_reason_regex: '(?i)insufficient'}"),
        {"reason": "job failed", "detailed_reason": "Insufficient balance"}),
    Row("failed task name glob", one_rule("{task_name: 'pre*'}"), {"tasks": [("prepare", [(1, "x")])]}),
    Row("failed task name glob mismatch", one_rule("{task_name: 'pre*'}"), {"tasks": OOM},
        action=Action.SKIP, rule="default"),
    Row("exit code in list", one_rule("{exit_code: [137, 139]}"), {"tasks": OOM}),
    Row("exit code range", one_rule("{exit_code: ['1-2']}"), {"tasks": USAGE}),
    Row("exit code bound", one_rule("{exit_code: ['>=128']}"), {"tasks": OOM}),
    Row("exit code not_in", one_rule("{exit_code: {not_in: [0, 137]}}"), {"tasks": USAGE}),
    Row("exit code not_in excludes", one_rule("{exit_code: {not_in: [137]}}"), {"tasks": OOM},
        action=Action.SKIP, rule="default"),
    Row("no exit code satisfies neither in nor not_in", one_rule("{exit_code: {not_in: [0]}}"),
        {"tasks": SPOT}, action=Action.SKIP, rule="default"),
    Row("instance StateReason glob", one_rule("{instance_reason: '*reclaim*'}"), {"tasks": SPOT}),
    Row("instance StateReason regex", one_rule("{instance_reason_regex: '(?i)^spot'}"), {"tasks": SPOT}),
    Row("instance reason glob matches the StateDetailedReason too",
        one_rule("{instance_reason: '*reclaim*'}"),
        {"tasks": [("main", [(143, "task instance failed", "Spot instance reclaimed")])]}),
    Row("instance reason regex matches the StateDetailedReason too",
        one_rule("{instance_reason_regex: '(?i)^spot'}"),
        {"tasks": [("main", [(143, None, "Spot instance reclaimed")])]}),
    Row("instance reason glob matches neither text", one_rule("{instance_reason: '*reclaim*'}"),
        {"tasks": [("main", [(1, "task instance failed", "exit status 1")])]},
        action=Action.SKIP, rule="default"),
    Row("instance conditions hold on one instance, not across instances",
        one_rule("{exit_code: 137, instance_reason: 'OOM*'}"),
        {"tasks": [("main", [(137, "disk full"), (1, "OOMKilled")])]},
        action=Action.SKIP, rule="default"),
    Row("instance conditions hold together on one instance",
        one_rule("{exit_code: 137, instance_reason: 'OOM*'}"),
        {"tasks": [("main", [(1, "disk full"), (137, "OOMKilled")])]}),
    Row("empty when matches everything", "rules:\n  - {name: r, action: RETRY}"),
    # ---- actions -----------------------------------------------------------------------------------
    Row("RETRY spends the job budget under the policy cap", one_rule("{}"), {"spent": {"attempts": 1}},
        reason="retry 2 of 3", cap=3),
    Row("RETRY with a per-rule cap", one_rule("{}", extra="    max_attempts: 5\n"),
        {"spent": {"attempts": 4}}, reason="retry 5 of 5", cap=5),
    Row("RETRY at its cap still states counter and cap: the ledger refuses the claim",
        one_rule("{}"), {"spent": {"attempts": 3}},
        reason="retry 4 of 3: over the cap, the ledger will refuse it", cap=3),
    Row("RETRY_UNCOUNTED leaves the job budget alone", one_rule("{}", "RETRY_UNCOUNTED"),
        {"spent": {"attempts": 3}}, reason="uncounted retry 1 of 10", counter="uncounted", cap=10),
    Row("RETRY_UNCOUNTED at its own cap states that cap",
        one_rule("{}", "RETRY_UNCOUNTED", "    max_uncounted: 2\n"),
        {"spent": {"uncounted": 2}}, reason="uncounted retry 3 of 2: over the cap", counter="uncounted",
        cap=2),
    Row("RETRY_UNCOUNTED with a named counter", one_rule("{}", "RETRY_UNCOUNTED", "    counter: spot\n"),
        {"spent": {"uncounted": 9}}, reason="spot retry 1 of 10", counter="spot", cap=10),
    Row("SKIP gives its reason", one_rule("{}", "SKIP", "    reason: usage error\n"),
        action=Action.SKIP, reason="usage error"),
    Row("rule reason leads a retry's reason", one_rule("{}", extra="    reason: flaky network\n"),
        reason="flaky network: retry 1 of 3"),
    Row("default SKIP with its reason", "default: {action: SKIP, reason: not ours}",
        action=Action.SKIP, rule="default", reason="not ours"),
    Row("default RETRY spends the budget", "default: {action: RETRY}\nlimits: {max_attempts: 2}",
        {"spent": {"attempts": 1}}, rule="default", reason="no rule matched: retry 2 of 2", cap=2),
    Row("no default section skips", "rules: []", action=Action.SKIP, rule="default"),
    # ---- first match wins ----------------------------------------------------------------------------
    Row("first matching rule wins",
        "rules:\n  - {name: oom, when: {exit_code: 137}, action: SKIP}\n"
        "  - {name: r, when: {job_name: 'render-*'}, action: RETRY}",
        {"tasks": OOM}, action=Action.SKIP, rule="oom"),
    Row("order decides between two matching rules",
        "rules:\n  - {name: r, when: {job_name: 'render-*'}, action: RETRY}\n"
        "  - {name: oom, when: {exit_code: 137}, action: SKIP}",
        {"tasks": OOM}),
    Row("a non-matching rule is passed over",
        "rules:\n  - {name: etl, when: {job_name: 'etl-*'}, action: SKIP}\n  - {name: r, action: RETRY}"),
    # ---- overrides -----------------------------------------------------------------------------------
    Row("tag disables", one_rule("{}"), {"tags": {"autoretry:disabled": "true"}},
        action=Action.SKIP, rule="override", reason="disabled_by_tag: tag autoretry:disabled='true'"),
    Row("event var disables", one_rule("{}"), {"event_vars": {"autoretry:disabled": "yes"}},
        action=Action.SKIP, rule="override", reason="disabled_by_tag: event var"),
    Row("event var false does not re-enable a tag-disabled job", one_rule("{}"),
        {"tags": {"autoretry:disabled": "true"}, "event_vars": {"autoretry:disabled": "false"}},
        action=Action.SKIP, rule="override"),
    Row("disabled false changes nothing", one_rule("{}"), {"tags": {"autoretry:disabled": "false"}}),
    Row("tag overrides switched off", one_rule("{}") + "overrides: {tags: false}",
        {"tags": {"autoretry:disabled": "true"}}),
    Row("event var overrides switched off", one_rule("{}") + "overrides: {event_vars: false}",
        {"event_vars": {"autoretry:disabled": "true"}}),
    Row("max-attempts tag raises the cap", one_rule("{}"),
        {"tags": {"autoretry:max-attempts": "5"}, "spent": {"attempts": 4}},
        reason="retry 5 of 5 (cap from tag autoretry:max-attempts='5')", cap=5),
    Row("max-attempts tag lowers the cap", one_rule("{}", extra="    max_attempts: 9\n"),
        {"tags": {"autoretry:max-attempts": "1"}, "spent": {"attempts": 1}},
        reason="retry 2 of 1: over the cap, the ledger will refuse it (cap from tag", cap=1),
    Row("max-attempts event var lowers the cap", one_rule("{}"),
        {"event_vars": {"autoretry:max-attempts": "1"}},
        reason="retry 1 of 1 (cap from event var autoretry:max-attempts='1')", cap=1),
    Row("max-attempts event var lowers the tag's cap", one_rule("{}"),
        {"tags": {"autoretry:max-attempts": "5"}, "event_vars": {"autoretry:max-attempts": "2"}},
        reason="retry 1 of 2 (cap from event var", cap=2),
    Row("max-attempts event var cannot raise the tag's cap", one_rule("{}"),
        {"tags": {"autoretry:max-attempts": "1"}, "event_vars": {"autoretry:max-attempts": "4"}},
        reason="retry 1 of 1 (cap from tag autoretry:max-attempts='1'); ignored event var "
               "autoretry:max-attempts='4': a notice may only lower the cap (1)", cap=1),
    Row("max-attempts event var cannot raise the policy's cap", one_rule("{}"),
        {"event_vars": {"autoretry:max-attempts": "100"}, "spent": {"attempts": 3}},
        reason="retry 4 of 3: over the cap, the ledger will refuse it; ignored event var", cap=3),
    Row("policy-rule event var cannot choose a rule",
        "rules:\n  - {name: oom, when: {exit_code: 137}, action: SKIP}\n"
        "  - {name: everything-else, when: {job_name: 'etl-*'}, action: RETRY}",
        {"tasks": OOM, "event_vars": {"autoretry:policy-rule": "everything-else"}},
        action=Action.SKIP, rule="oom",
        reason="skipped by rule; ignored event var autoretry:policy-rule='everything-else': a notice "
               "cannot choose a rule"),
    Row("tag values are read in any case", one_rule("{}"), {"tags": {"autoretry:disabled": "TRUE"}},
        action=Action.SKIP, rule="override", reason="disabled_by_tag: tag autoretry:disabled='TRUE'"),
    Row("tag keys and yes are read in any case", one_rule("{}"), {"tags": {"AutoRetry:Disabled": "Yes"}},
        action=Action.SKIP, rule="override"),
    Row("max-attempts does not touch the uncounted cap", one_rule("{}", "RETRY_UNCOUNTED"),
        {"tags": {"autoretry:max-attempts": "0"}}, counter="uncounted", cap=10),
    Row("invalid max-attempts is ignored and noted", one_rule("{}"),
        {"tags": {"autoretry:max-attempts": "lots"}},
        reason="retry 1 of 3; ignored tag autoretry:max-attempts='lots': expected a whole number", cap=3),
    Row("invalid disabled value is ignored and noted", one_rule("{}"),
        {"tags": {"autoretry:disabled": "maybe"}},
        reason="retry 1 of 3; ignored tag autoretry:disabled='maybe': expected true or false"),
    Row("policy-rule tag forces a rule without its conditions",
        "rules:\n  - {name: r, when: {job_name: 'etl-*'}, action: RETRY_UNCOUNTED}",
        {"tags": {"autoretry:policy-rule": "r"}}, counter="uncounted"),
    Row("unknown policy-rule is ignored and noted", one_rule("{}"),
        {"tags": {"autoretry:policy-rule": "nope"}},
        reason="retry 1 of 3; ignored tag autoretry:policy-rule='nope': no rule of that name"),
    # ---- maximum failure age ---------------------------------------------------------------------------
    Row("failure older than a day is too old", one_rule("{}"), {"age_s": 25 * 3600},
        action=Action.SKIP, rule="max_failure_age", reason="too_old: failure ended 25h ago; limit 24h"),
    Row("max_failure_age from the file", one_rule("{}") + "limits: {max_failure_age: 1h}",
        {"age_s": 3601}, action=Action.SKIP, rule="max_failure_age", reason="too_old"),
    Row("failure just inside max_failure_age", one_rule("{}") + "limits: {max_failure_age: 1h}",
        {"age_s": 3600}),
    Row("too old wins over a disabling tag", one_rule("{}"),
        {"age_s": 90000, "tags": {"autoretry:disabled": "true"}}, action=Action.SKIP,
        rule="max_failure_age"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_policy_decides(row: Row) -> None:
    decision, _ = as_the_retrier(policy(row.rules), failure(**row.facts))
    assert (decision.action, decision.rule) == (row.action, row.rule), decision.reason
    assert decision.reason.startswith(row.reason), decision.reason
    if row.action == Action.RETRY:
        assert decision.counter == row.counter
        if row.cap is not None:
            assert decision.cap == row.cap


def test_name_and_tag_policy_never_wants_details() -> None:
    p = policy("""
        rules:
          - {name: nightly, when: {job_name: 'nightly-*', tags: {team: data}}, action: RETRY}
          - {name: vars, when: {event: JOB_FAILED, event_vars: {pipeline: x}}, action: RETRY}
        default: {action: RETRY}
    """)
    for facts in ({}, {"name": "nightly-1", "tags": {"team": "data"}}, {"event_vars": {"pipeline": "x"}}):
        decision, read = as_the_retrier(p, failure(**facts))  # type: ignore[arg-type]
        assert decision.action == Action.RETRY and not read


def test_detail_condition_is_not_checked_when_a_cheap_one_fails() -> None:
    p = policy("rules:\n  - {name: r, when: {job_name: 'etl-*', exit_code: 137}, action: SKIP}")
    decision, read = as_the_retrier(p, failure(tasks=OOM))
    assert decision.rule == "default" and not read


def test_details_are_wanted_for_the_first_rule_that_could_still_match() -> None:
    p = policy("""
        rules:
          - {name: etl, when: {job_name: 'etl-*', exit_code: 137}, action: SKIP}
          - {name: render, when: {job_name: 'render-*'}, action: RETRY}
          - {name: oom, when: {exit_code: 137}, action: SKIP}
    """)
    bare = replace(failure(tasks=OOM), details=None)
    assert not p.wants_details(bare)  # 'render' decides from the name before 'oom' is reached
    assert p.decide(bare).rule == "render"
    assert p.wants_details(replace(bare, job=bare.job.model_copy(update={"JobName": "etl-1"})))


def test_one_read_of_details_serves_every_detail_rule() -> None:
    p = policy("""
        rules:
          - {name: a, when: {job_reason: 'x*'}, action: SKIP}
          - {name: b, when: {exit_code: 1}, action: SKIP}
          - {name: c, when: {instance_reason: 'OOM*'}, action: SKIP}
    """)
    decision, read = as_the_retrier(p, failure(tasks=OOM))
    assert decision.rule == "c" and read


def test_details_are_not_wanted_once_given() -> None:
    p = policy("rules:\n  - {name: r, when: {exit_code: 137}, action: SKIP}")
    f = failure(tasks=OOM)
    assert not p.wants_details(f)
    assert p.wants_details(replace(f, details=None))


def test_deciding_without_the_details_a_rule_needs_is_a_clear_error() -> None:
    p = policy("rules:\n  - {name: oom, when: {exit_code: 137}, action: SKIP}")
    with pytest.raises(DetailsMissing, match=r"rule 'oom' needs the job's details .*policy.wants_details"):
        p.decide(replace(failure(tasks=OOM), details=None))


@pytest.mark.parametrize("facts", [
    {"age_s": 200_000},  # too old
    {"tags": {"autoretry:disabled": "true"}},  # disabled
    {"tags": {"autoretry:policy-rule": "all"}},  # a rule forced by its tag, conditions unchecked
])
def test_decisions_made_before_the_rules_want_no_details(facts: dict[str, Any]) -> None:
    p = policy("rules:\n  - {name: r, when: {exit_code: 137}, action: RETRY}\n"
               "  - {name: all, action: RETRY}")
    decision, read = as_the_retrier(p, failure(tasks=OOM, **facts))
    assert not read, decision


def test_ignored_overrides_travel_on_the_decision_and_the_policy_logs_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    p = policy("rules:\n  - {name: r, action: RETRY}")
    with caplog.at_level(logging.DEBUG):
        d = p.decide(failure(tags={"autoretry:max-attempts": "lots"},
                             event_vars={"autoretry:policy-rule": "r"}))
    assert d.notes == ("tag autoretry:max-attempts='lots': expected a whole number from 0 to 100",
                       "event var autoretry:policy-rule='r': a notice cannot choose a rule; set it "
                       "as a job tag")
    assert caplog.records == []


def test_fleet_budget_travels_on_every_retry_decision() -> None:
    p = policy("""
        limits: {fleet_budget: {max_retries: 50, window: 5m}}
        rules:
          - {name: spot, when: {instance_reason: '*reclaim*'}, action: RETRY_UNCOUNTED}
        default: {action: RETRY}
    """)
    assert p.decide(failure(tasks=SPOT)).fleet == FleetBudget(50, 300.0)
    assert p.decide(failure()).fleet == FleetBudget(50, 300.0)


def test_no_fleet_budget_unless_the_file_sets_one() -> None:
    assert policy("default: {action: RETRY}").decide(failure()).fleet is None


def test_a_spent_counter_is_due_at_once_so_its_refusal_is_not_delayed() -> None:
    p = policy("default: {action: RETRY}\nlimits: {max_attempts: 2, backoff: {initial: 1m, jitter: none}}")
    assert p.decide(failure(spent={"attempts": 1})).delay_s == 120
    spent = p.decide(failure(spent={"attempts": 2}))
    assert (spent.action, spent.delay_s, spent.cap) == (Action.RETRY, 0.0, 2)
    assert spent.over_cap_reason == "max_attempts: the job's cap of 2 retries is spent"


def test_backoff_grows_with_retries_spent_and_is_capped() -> None:
    p = policy("""
        default: {action: RETRY}
        limits: {max_attempts: 10, backoff: {initial: 30s, factor: 2, cap: 2m, jitter: none}}
    """)
    delays = [p.decide(failure(spent={"attempts": n})).delay_s for n in range(5)]
    assert delays == [30, 60, 120, 120, 120]


def test_rule_backoff_replaces_only_the_fields_it_sets() -> None:
    p = policy("""
        limits: {backoff: {initial: 10s, factor: 3, cap: 5m, jitter: none}}
        rules:
          - {name: r, action: RETRY, backoff: {initial: 1m}}
    """)
    assert [p.decide(failure(spent={"attempts": n})).delay_s for n in range(3)] == [60, 180, 300]


def test_default_backoff_retries_at_once() -> None:
    assert policy("default: {action: RETRY}").decide(failure()).delay_s == 0


def test_jittered_delay_is_the_same_each_time_the_failure_is_decided() -> None:
    # A deferred failure is decided again when it comes due; a new draw would move its due time.
    p = policy("default: {action: RETRY}\nlimits: {backoff: {initial: 1m, cap: 10m, jitter: full}}")
    first = p.decide(failure(spent={"attempts": 2})).delay_s
    assert 0 <= first <= 240
    assert all(p.decide(failure(spent={"attempts": 2})).delay_s == first for _ in range(5))
    others = {p.decide(failure(job_id=f"job-{i:08d}", spent={"attempts": 2})).delay_s for i in range(20)}
    assert len(others) > 1  # different failures are spread out


def test_injected_rng_draws_the_jitter() -> None:
    p = policy("default: {action: RETRY}\nlimits: {backoff: {initial: 100s, cap: 100s, jitter: full}}")
    expected = random.Random(7).uniform(0, 100)
    assert p.decide(failure(rng=random.Random(7))).delay_s == expected


def test_explain_lists_every_rule_with_the_first_failing_condition() -> None:
    p = policy("""
        rules:
          - {name: etl, when: {job_name: 'etl-*', exit_code: 137}, action: SKIP}
          - {name: oom, when: {exit_code: [137]}, action: SKIP}
          - {name: all, action: RETRY}
    """)
    ex = p.explain(failure(tasks=OOM))
    assert ex.winner == "oom" and ex.decision.rule == "oom"
    assert [(r.name, r.status) for r in ex.rules] == [("etl", "no"), ("oom", "matched"), ("all", "shadowed")]
    assert ex.rules[0].why.startswith("job_name: 'render-nightly' matches none of")
    assert ex.rules[2].why == "matches too, but an earlier rule won"
    assert ex.details_needed


def test_explain_says_details_were_not_needed_when_a_cheap_rule_decided() -> None:
    p = policy("""
        rules:
          - {name: nightly, when: {job_name: 'render-*'}, action: RETRY}
          - {name: oom, when: {exit_code: 137}, action: SKIP}
    """)
    ex = p.explain(failure(tasks=OOM))
    assert ex.winner == "nightly"
    assert not ex.details_needed


def test_sweep_leaves_out_failures_the_listing_alone_shows_would_be_skipped() -> None:
    p = policy("""
        rules:
          - {name: nightly, when: {job_name: 'nightly-*'}, action: RETRY}
          - {name: etl, when: {job_name: 'etl-*', event_vars: {pipeline: x}}, action: RETRY}
          - {name: oom, when: {job_name: 'oom-*', exit_code: 137}, action: RETRY}
    """)
    def view(name: str, **tags: str) -> JobView:
        return JobView(JobId="job-abcd1234", JobName=name, JobState="FAILED",
                       EndTime="2026-05-01T10:00:00Z", Tags=tags)
    assert p.in_scope(view("nightly-1"))
    assert p.in_scope(view("oom-1"))  # needs DescribeTask to know: the flush decides
    assert not p.in_scope(view("adhoc"))  # the default SKIP, certain from the listing
    assert not p.in_scope(view("etl-1"))  # event vars come only with a notice
    assert not p.in_scope(view("nightly-1", **{"autoretry:disabled": "true"}))
    assert policy("default: {action: RETRY}").in_scope(view("adhoc"))


def test_policy_exposes_its_limits_to_the_sweep_and_operators() -> None:
    p: RulesPolicy = policy("limits: {max_attempts: 4, max_failure_age: 6h}")
    assert p.max_failure_age_s == 6 * 3600
    assert p.max_attempts == 4
