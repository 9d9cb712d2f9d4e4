"""Loading AUTORETRY_POLICY: unset means the built-in default; a file or inline text becomes rules;
every mistake is reported with its field path and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

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
    assert p.decide(failure(spent={"attempts": 3})).action == Action.SKIP


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


def test_policy_error_is_a_value_error_the_entry_point_reports() -> None:
    assert issubclass(PolicyError, ValueError)


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as e:
        load_policy(dedent(text))
    return str(e.value)


@pytest.mark.parametrize(("text", "message"), [
    ("rules: []", "version: required"),
    ("version: 2", "version: Input should be 1, got 2"),
    ("version: 1\nrule: []", "rule: unknown field (did you mean 'rules'?); allowed: default, limits, "
     "overrides, rules, version"),
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
    ("version: 1\nrules: []\nrules: []", "not valid YAML: line 3, column 1: key 'rules' appears twice "
     "(first on line 2)"),
    ("version: 1\nrules: [\n", "not valid YAML: line 3"),
    ("version: 1\nrules:\n  - {name: a, action: SKIP, when: {job_reason: *quota*}}",
     "not valid YAML: line 3, column 54: expected alphabetic or numeric character, but found '*' (a glob "
     "that starts with * must be quoted: '*quota*')"),
    ('{"version": 1,}', "not valid JSON: line 1, column 15"),
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
