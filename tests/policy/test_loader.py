"""Loading AUTORETRY_POLICY: unset means the built-in default; a file or inline text becomes rules;
every mistake is reported with its field path and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from handler.jobs import JobView
from handler.policy import Action, DefaultPolicy
from handler.policy.engine import RulesPolicy
from handler.policy.loader import PolicyError, load_policy

from .builders import failure


@pytest.mark.parametrize("spec", [None, "", "   \n"])
def test_unset_policy_is_the_builtin_default(spec: str | None) -> None:
    p = load_policy(spec)
    assert isinstance(p, DefaultPolicy)
    first = p.decide(failure())
    assert (first.action, first.delay_s, first.cap, first.counter) == (Action.RETRY, 0.0, 3, "attempts")
    assert p.notify_outcomes is None
    # At the cap the decision still names counter and cap: the ledger's claim refuses it
    # (tests/policy/test_policy_in_the_retrier.py pins the end result).
    spent = p.decide(failure(spent={"attempts": 3}))
    assert (spent.action, spent.cap, spent.counter) == (Action.RETRY, 3, "attempts")


@pytest.mark.parametrize(("tags", "event_vars", "action", "rule", "cap", "reason"), [
    ({"autoretry:disabled": "true"}, {}, Action.SKIP, "override", None,
     "disabled_by_tag: tag autoretry:disabled='true'"),
    ({"autoretry:disabled": "TRUE"}, {}, Action.SKIP, "override", None, "disabled_by_tag"),
    ({"autoretry:disabled": "Yes"}, {}, Action.SKIP, "override", None, "disabled_by_tag"),
    ({}, {"autoretry:disabled": "true"}, Action.SKIP, "override", None,
     "disabled_by_tag: event var autoretry:disabled='true'"),
    ({"autoretry:disabled": "false"}, {}, Action.RETRY, "default", 3, "retry 1 of 3"),
    ({"autoretry:max-attempts": "0"}, {}, Action.RETRY, "default", 0,
     "retry 1 of 0: over the cap, the ledger will refuse it (cap from tag autoretry:max-attempts='0')"),
    ({"autoretry:max-attempts": "4"}, {}, Action.RETRY, "default", 4,
     "retry 1 of 4 (cap from tag autoretry:max-attempts='4')"),
    ({}, {"autoretry:max-attempts": "1"}, Action.RETRY, "default", 1,
     "retry 1 of 1 (cap from event var autoretry:max-attempts='1')"),
    ({}, {"autoretry:max-attempts": "100"}, Action.RETRY, "default", 3,
     "retry 1 of 3; ignored event var autoretry:max-attempts='100': a notice may only lower the cap"),
    ({"autoretry:max-attempts": "lots"}, {}, Action.RETRY, "default", 3,
     "retry 1 of 3; ignored tag autoretry:max-attempts='lots': expected a whole number"),
])
def test_the_builtin_default_honours_the_submitters_tags(
        tags: dict[str, str], event_vars: dict[str, str], action: Action, rule: str, cap: int | None,
        reason: str) -> None:
    d = DefaultPolicy().decide(failure(tags=tags, event_vars=event_vars))
    assert (d.action, d.rule) == (action, rule), d.reason
    assert d.reason.startswith(reason), d.reason
    if cap is not None:
        assert d.cap == cap


def test_the_builtin_default_leaves_a_disabled_job_out_of_the_sweep() -> None:
    def view(**tags: str) -> JobView:
        return JobView(JobId="job-abcd1234", JobState="FAILED", EndTime="2026-05-01T10:00:00Z",
                       Tags=tags)
    p = DefaultPolicy()
    assert p.in_scope(view())
    assert not p.in_scope(view(**{"autoretry:disabled": "Yes"}))
    assert not p.wants_details(failure())


def test_policy_file_path_yaml(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("version: 1\nrules:\n  - {name: all, action: RETRY}\n")
    p = load_policy(str(f))
    assert isinstance(p, RulesPolicy) and p.source == str(f)
    assert p.decide(failure()).rule == "all"


def test_policy_file_path_json(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"version": 1, "default": {"action": "RETRY"}}))
    assert load_policy(str(f)).decide(failure()).rule == "default"


def test_inline_yaml_and_inline_json_are_accepted() -> None:
    yaml_text = "version: 1\ndefault: {action: RETRY, reason: inline}\n"
    json_text = '{"version": 1, "default": {"action": "RETRY", "reason": "inline"}}'
    for text in (yaml_text, json_text):
        assert load_policy(text).decide(failure()).reason.startswith("inline: retry 1 of 3")


def test_missing_policy_file_is_named() -> None:
    with pytest.raises(PolicyError, match=r"policy file /nowhere/p\.yaml: not found"):
        load_policy("/nowhere/p.yaml")


def test_a_broken_policy_refuses_every_notice_and_names_the_field(
        function_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from handler import app
    from handler.commands.serve import apigw_event

    monkeypatch.setenv("AUTORETRY_POLICY", "version: 1\nlimits: {max_atempts: 2}\n")
    notice = {"Events": [{"EventName": "JOB_FAILED", "Region": "ap-guangzhou",
                          "Batch": {"JobId": "job-abcd1234", "JobState": "FAILED"}}]}
    answer = app.main_handler(apigw_event("POST", "/events", {"Content-Type": "text/plain"},
                                          json.dumps(notice).encode()), {})
    assert answer["statusCode"] >= 500  # the topic redelivers once the policy is fixed
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    problems = [line for line in logged if line.get("level") == "ERROR"]
    assert any("limits.max_atempts: unknown field (did you mean 'max_attempts'?)" in line.get("error", "")
               for line in problems), problems
    assert not (function_env.exists() and _enqueued(function_env))


def _enqueued(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as c:
        tables = [r[0] for r in c.execute("select name from sqlite_master where type='table'")]
        return sum(c.execute(f"select count(*) from {t}").fetchone()[0] for t in tables)


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as e:
        load_policy(dedent(text))
    return str(e.value)


@pytest.mark.parametrize(("text", "message"), [
    ("rules: []", "version: required"),
    ("version: 2", "version: Input should be 1, got 2"),
    ("version: 1\nrule: []", "rule: unknown field (did you mean 'rules'?); allowed: default, limits, "
     "notify, overrides, rules, version"),
    ("version: 1\nrules:\n  - {name: a, action: RETRI}",
     "rules[0] 'a'.action: Input should be 'RETRY', 'SKIP' or 'RETRY_UNCOUNTED'"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {exitcode: 1}}",
     "rules[0] 'a'.when.exitcode: unknown field (did you mean 'exit_code'?); allowed: event, event_vars"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {exit_code: [1, '2-x']}}",
     "rules[0] 'a'.when.exit_code.in[1]: expected an exit code (137), a range (\"1-2\") or a bound"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {exit_code: ['5-1']}}",
     "range '5-1' is empty"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {exit_code: {in: [1], not_in: [2]}}}",
     "rules[0] 'a'.when.exit_code: give exactly one of `in` or `not_in`"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {event: JOB_DONE}}",
     "rules[0] 'a'.when.event: unknown event 'JOB_DONE'; allowed: JOB_FAILED, JOB_FAILED_INTERRUPTED"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {job_reason_regex: '[a-'}}",
     "rules[0] 'a'.when.job_reason_regex: not a valid regular expression"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {tags: {team: [x]}}}",
     "rules[0] 'a'.when.tags: 'team': expected a glob such as 'data-*', or true (present) / false"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, max_attempts: 2}",
     "rules[0] 'a'.max_attempts: only for action RETRY; this rule's action is SKIP"),
    ("version: 1\nrules:\n  - {name: a, action: RETRY, max_uncounted: 2}",
     "rules[0] 'a'.max_uncounted: only for action RETRY_UNCOUNTED; this rule's action is RETRY"),
    ("version: 1\nrules:\n  - {name: a, action: RETRY_UNCOUNTED, counter: attempts}",
     "rules[0] 'a'.counter: 'attempts' is the job's own budget"),
    ("version: 1\nrules:\n  - {name: 'bad name', action: SKIP}",
     "rules[0] 'bad name'.name: expected up to 64 letters, digits, '_', '.', ':' or '-', starting with a "
     "letter or digit, got 'bad name'"),
    ("version: 1\nrules:\n  - {name: a, action: RETRY_UNCOUNTED, counter: Spot}",
     "rules[0] 'a'.counter: expected up to 32 lowercase letters"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP}\n  - {name: a, action: RETRY}",
     "rules[1] 'a'.name: already used by rules[0]"),
    ("version: 1\nrules:\n  - {name: default, action: SKIP}",
     "rules[0] 'default'.name: 'default' is reserved"),
    ("version: 1\nlimits: {backoff: {cap: 10 minutes}}", "limits.backoff.cap: expected a duration such as"),
    ("version: 1\nlimits: {backoff: {jitter: half}}",
     "limits.backoff.jitter: Input should be 'full' or 'none'"),
    ("version: 1\nlimits: {backoff: {factor: 0.5}}", "limits.backoff.factor: Input should be greater than or "
     "equal to 1"),
    ("version: 1\nlimits: {backoff: {initial: 20m, cap: 10m}}",
     "limits.backoff.initial: 20m is above the cap"),
    ("version: 1\nlimits: {max_failure_age: 1h}\nrules:\n  - {name: a, action: RETRY, backoff: {initial: 1m, "
     "cap: 2h}}", "rules[0] 'a'.backoff.cap: 2h is not shorter than limits.max_failure_age (1h)"),
    ("version: 1\nlimits: {max_failure_age: 36h}",
     "limits.max_failure_age: expected more than 0s and at most "
     "24h, got 36h"),
    ("version: 1\nlimits: {max_attempts: many}", "limits.max_attempts: Input should be a valid integer"),
    ("version: 1\nlimits: {fleet_budget: {max_fraction: 0.5}}",
     "limits.fleet_budget.max_fraction: unknown field (did you mean 'max_retries'?); allowed: max_retries, "
     "window"),
    ("version: 1\nlimits: {fleet_budget: {max_retries: 10, window: 2d}}",
     "limits.fleet_budget.window: expected from 1s to 24h"),
    ("version: 1\ndefault: {action: RETRY_UNCOUNTED}", "default.action: Input should be 'SKIP' or 'RETRY'"),
    ("version: 1\noverrides: {tag: false}", "overrides.tag: unknown field (did you mean 'tags'?)"),
    ("version: 1\nnotify: {outcomes: [max_attempts, gave_up]}",
     "notify.outcomes: unknown outcome 'gave_up'; allowed: budget_exhausted, max_attempts, rejected, "
     "skipped"),
    ("version: 1\nnotify: {outcomes: max_attempts}", "notify.outcomes: Input should be a valid list"),
    ("version: 1\nnotify: {channels: [slack]}", "notify.channels: unknown field"),
    ("version: 1\nrules: []\nrules: []", "not valid YAML: line 3, column 1: key 'rules' appears twice "
     "(first on line 2)"),
    ("version: 1\nrules: [\n", "not valid YAML: line 3"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {job_reason: *quota*}}",
     "not valid YAML: line 3, column 54: expected alphabetic or numeric character, but found '*' (a glob "
     "that starts with * must be quoted: '*quota*')"),
    ('{"version": 1', "not valid YAML: line 1, column 14: expected ',' or '}'"),
    ("- version: 1", "expected a mapping with `version: 1` and `rules:`, got list"),
])
def test_policy_errors_name_the_field_and_what_is_allowed(text: str, message: str) -> None:
    assert message in _error(text)


def test_every_problem_is_reported_at_once() -> None:
    msg = _error("""
        version: 1
        limits: {max_attempts: -1, backoff: {factr: 2}}
        rules:
          - {name: a, action: RETRI}
          - {name: b, action: SKIP, when: {exit_code: x}}
    """)
    assert msg.startswith("inline policy: 4 problems\n")
    for path in ("limits.max_attempts", "limits.backoff.factr", "rules[0] 'a'.action",
                 "rules[1] 'b'.when.exit_code.in[0]"):
        assert f"\n  - {path}: " in msg


def test_error_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "team.yaml"
    f.write_text("version: 1\nrules: 5\n")
    assert _error(str(f)).startswith(f"{f}: 1 problem\n  - rules: Input should be a valid list")


def test_lowercase_actions_and_jitter_are_read_as_written_in_capitals() -> None:
    p = load_policy("version: 1\nrules:\n  - {name: a, action: retry_uncounted, backoff: {jitter: NONE}}")
    assert isinstance(p, RulesPolicy) and p.spec.rules[0].action == "RETRY_UNCOUNTED"


def test_notify_names_the_give_up_outcomes_that_tell_operators() -> None:
    p = load_policy("version: 1\nnotify: {outcomes: [max_attempts, budget_exhausted]}\n")
    assert isinstance(p, RulesPolicy)
    assert p.notify_outcomes == frozenset({"max_attempts", "budget_exhausted"})
    assert load_policy("version: 1\nnotify: {outcomes: []}\n").notify_outcomes == frozenset()
    assert load_policy("version: 1\n").notify_outcomes is None  # the environment's default


def test_the_builtin_default_loads_without_yaml_or_the_rule_models() -> None:
    # A cold start without AUTORETRY_POLICY should not pay for the policy-file machinery (~40 ms).
    code = ("import sys; from handler.policy.loader import load_policy; load_policy(None); "
            "print(sorted(m for m in ('yaml', 'handler.policy.rules', 'handler.policy.engine') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
