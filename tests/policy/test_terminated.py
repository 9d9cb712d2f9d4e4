"""A failure that TerminateJob caused, where its details say so, is skipped before any rule: the
operator stopped the job. The details are read only where a rule needs them anyway (reading them
for every failure costs a DescribeJob and a DescribeTask per job); `python -m handler terminate`
holds the job first, and that protects it whatever the failure says (tests/e2e)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handler.policy import Action, DefaultPolicy, terminated_by_user
from handler.policy.loader import PolicyError, load_rules_policy

from .builders import as_the_retrier, failure, policy

# A rule that reads instance reasons and would retry a lost node, terminated or not.
LOST_NODES = """
    default: {action: RETRY}
    rules:
      - name: lost-node
        when: {instance_reason_regex: '(?i)(node|instance).{0,40}terminated'}
        action: RETRY_UNCOUNTED
"""


@pytest.mark.parametrize(("job_reason", "instance_reason"), [
    ("terminated by user", None),
    ("task failed", "instance terminated by user"),
    ("task failed", "TerminateJob called"),
    (None, "Terminated by the user"),
    ("用户手动终止", None),
])
def test_a_failure_whose_details_say_it_was_terminated_is_skipped_before_any_rule(
        job_reason: str | None, instance_reason: str | None) -> None:
    f = failure(reason=job_reason, tasks=[("main", [(-1, instance_reason)])])
    decision, read = as_the_retrier(policy(LOST_NODES), f)
    assert read
    assert (decision.action, decision.rule) == (Action.SKIP, "terminated")
    assert decision.reason.startswith("terminated_by_user: ")


@pytest.mark.parametrize("text", [
    "OOMKilled: the container was terminated by the kernel",
    "instance terminated: the spot instance was reclaimed",
    "task failed",
])
def test_failure_texts_that_do_not_name_a_termination_by_the_user_are_decided_by_the_rules(
        text: str) -> None:
    f = failure(reason=text, tasks=[("main", [(-1, text)])])
    assert terminated_by_user(f.details) is None
    decision, _ = as_the_retrier(policy(LOST_NODES), f)
    assert decision.rule != "terminated"


def test_a_policy_that_needs_no_details_does_not_read_them_to_look_for_a_termination() -> None:
    f = failure(reason="terminated by user")
    decision, read = as_the_retrier(policy("rules: [{name: all, action: RETRY}]"), f)
    assert not read and (decision.action, decision.rule) == (Action.RETRY, "all")


def test_terminated_is_reserved_for_the_decision_no_rule_made() -> None:
    with pytest.raises(PolicyError, match="'terminated' is reserved"):
        load_rules_policy("version: 1\nrules:\n  - {name: terminated, action: SKIP}")


@pytest.mark.parametrize("said", ["terminated by user", "TerminateJob called", "用户手动终止"])
def test_the_built_in_policy_skips_a_failure_whose_notice_said_it_was_terminated(said: str) -> None:
    f = replace(failure(reason=None), said=said)
    decision, read = as_the_retrier(DefaultPolicy(), f)
    assert not read  # what the notice said costs no call
    assert (decision.action, decision.rule) == (Action.SKIP, "terminated")
    assert decision.reason.startswith("terminated_by_user: ") and "as its notice said" in decision.reason


def test_the_built_in_policy_retries_a_failure_whose_notice_said_something_else() -> None:
    for said in (None, "task failed", "CVM_SPOT_RECLAIMED: the spot instance was reclaimed"):
        decision, _ = as_the_retrier(DefaultPolicy(), replace(failure(reason=None), said=said))
        assert (decision.action, decision.rule) == (Action.RETRY, "default"), said


def test_a_rules_policy_skips_on_what_the_notice_said_without_reading_details() -> None:
    names_only = ("default: {action: RETRY}\n"
                  "rules: [{name: nightly, when: {job_name: 'x*'}, action: SKIP}]\n")
    decision, read = as_the_retrier(policy(names_only), replace(failure(), said="terminated by user"))
    assert not read
    assert (decision.action, decision.rule) == (Action.SKIP, "terminated")
