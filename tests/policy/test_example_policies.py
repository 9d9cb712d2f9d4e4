"""Every file in policies/ passes `policy check`, and each example decides as its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.commands.policy import main
from handler.policy import Action
from handler.policy.engine import RulesPolicy
from handler.policy.loader import load_rules_policy

from .builders import as_the_retrier, failure

POLICIES = Path(__file__).parents[2] / "policies"
FILES = sorted(POLICIES.glob("*.y*ml")) + sorted(POLICIES.glob("*.json"))


def test_the_examples_are_there() -> None:
    assert {f.name for f in FILES} >= {"spot-and-cvm-only.yaml", "skip-oom-and-usage-errors.yaml",
                                       "per-team.yaml"}


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_example_policy_passes_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"OK: {path}")


def example(name: str) -> RulesPolicy:
    return load_rules_policy(str(POLICIES / name))


def test_spot_and_cvm_only_retries_infrastructure_losses_without_spending_the_budget() -> None:
    p = example("spot-and-cvm-only.yaml")
    spot = p.decide(failure(tasks=[("main", [(143, "Spot instance reclaimed")])],
                            spent={"attempts": 3}))
    assert (spot.action, spot.rule, spot.counter) == (Action.RETRY, "spot-reclaimed", "spot")
    cvm = p.decide(failure(reason="Failed to create CVM instance: insufficient resources"))
    assert (cvm.action, cvm.rule, cvm.counter, cvm.cap) == (Action.RETRY, "cvm-creation-failed", "cvm", 5)
    node = p.decide(failure(tasks=[("main", [(None, "compute node lost")])]))
    assert (node.action, node.counter) == (Action.RETRY, "node")
    own = p.decide(failure(tasks=[("main", [(1, "process exited with code 1")])]))
    assert (own.action, own.rule) == (Action.SKIP, "default")


def test_skip_oom_and_usage_errors_retries_the_rest_with_backoff() -> None:
    p = example("skip-oom-and-usage-errors.yaml")
    assert p.decide(failure(tasks=[("main", [(137, None)])])).rule == "out-of-memory"
    for code in (1, 2):
        assert p.decide(failure(tasks=[("main", [(code, None)])])).rule == "usage-error"
    rest = p.decide(failure(tasks=[("main", [(143, None)])], spent={"attempts": 2}))
    assert (rest.action, rest.rule, rest.cap) == (Action.RETRY, "default", 3)
    assert 0 <= rest.delay_s <= 120  # 30s · 2² with full jitter
    spent = p.decide(failure(tasks=[("main", [(3, None)])], spent={"attempts": 3}))
    assert (spent.action, spent.counter, spent.cap, spent.delay_s) == (Action.RETRY, "attempts", 3, 0)


def test_per_team_routes_by_tags_names_and_event_vars() -> None:
    p = example("per-team.yaml")
    genomics = {"team": "genomics"}
    assert p.decide(failure(tags=genomics, tasks=[("main", [(137, None)])])).rule == "genomics-oom"
    g = p.decide(failure(tags=genomics, tasks=[("main", [(1, None)])]))
    assert (g.rule, g.cap) == ("genomics", 5)
    assert p.decide(failure(name="render-nightly-42")).rule == "render"
    assert p.decide(failure(name="x", tags={"team": "ml-vision", "cost-center": "cc1"})).cap == 2
    assert p.decide(failure(name="x", tags={"team": "ml-vision"})).rule == "default"
    assert p.decide(failure(name="etl-daily", event_vars={"pipeline": "nightly"})).rule == "etl-nightly"
    assert p.decide(failure(name="adhoc", tags={"env": "dev"})).action == Action.SKIP
    assert p.decide(failure(name="adhoc")).rule == "default"
    assert p.decide(failure(name="render-nightly-1")).fleet is not None


def test_per_team_reads_details_only_for_genomics_jobs() -> None:
    p = example("per-team.yaml")
    render, read = as_the_retrier(p, failure(name="render-nightly-1", tasks=[("main", [(137, None)])]))
    assert render.rule == "render" and not read
    oom, read = as_the_retrier(p, failure(tags={"team": "genomics"}, tasks=[("main", [(137, None)])]))
    assert oom.rule == "genomics-oom" and read


def test_per_team_tells_operators_when_a_budget_is_spent() -> None:
    assert example("per-team.yaml").notify_outcomes == {"max_attempts", "budget_exhausted"}
