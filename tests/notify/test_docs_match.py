"""docs/notify.md shows what the function does: its policy example passes `policy check`, and its
sample message carries the words the function writes (the examples are read from the page, so the
page cannot drift from the code unnoticed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handler.commands import policy as policy_command
from handler.jobs import FailureKey
from handler.notify import GiveUp, NotifySettings, formats
from handler.policy import Action, RetryDecision
from handler.policy.loader import load_policy

PAGE = Path(__file__).resolve().parents[2] / "docs" / "notify.md"


def blocks(language: str) -> list[str]:
    """The page's fenced code blocks in `language` ("" for those without one)."""
    found: list[str] = []
    current: list[str] = []
    inside: str | None = None
    for line in PAGE.read_text().splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), []
                continue
            if inside == language:
                found.append("\n".join(current))
            inside = None
        elif inside is not None:
            current.append(line)
    return found


def test_the_policy_example_passes_policy_check_and_chooses_the_outcomes_it_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = [b for b in blocks("yaml") if "notify:" in b]
    path = tmp_path / "policy.yaml"
    path.write_text(example)
    assert policy_command.main(["check", str(path)]) == 0, capsys.readouterr()
    policy = load_policy(str(path))
    assert policy.notify_outcomes == {"max_attempts", "budget_exhausted"}
    settings = NotifySettings.from_env({"AUTORETRY_NOTIFY_SLACK_URL": "https://slack.test/services/T/B/x"},
                                       policy_outcomes=policy.notify_outcomes)
    assert settings.wants("max_attempts") and not settings.wants("skipped")


def _sample() -> GiveUp:
    """The page's sample failure, given up as the function gives up a job whose 3 retries are spent."""
    spent = RetryDecision(Action.RETRY, "everything-else", "retry 4 of 3", cap=3)
    return GiveUp.of(FailureKey("ap-guangzhou", "job-3k9x2m1a", "2026-11-24T10:00:05Z"),
                     outcome="max_attempts", reason=spent.over_cap_reason, rule=spent.rule,
                     retries_spent=3, job_name="nightly-etl")


def test_the_sample_message_has_the_lines_the_function_writes() -> None:
    msg = _sample()
    (shown,) = [b for b in blocks("") if b.startswith("Batch job given up:")]
    assert shown.splitlines() == [msg.title, *(f"> {label}: {value}" for label, value in msg.fields()),
                                  f"History: `{msg.history}`"]


def test_the_sample_webhook_body_is_the_one_the_function_sends() -> None:
    (shown,) = [b for b in blocks("json") if '"job.given_up"' in b]
    assert json.loads(shown) == formats.webhook(_sample())
