"""What a give-up message says: the job, why it was given up, and where to read its history."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from handler.jobs import FailureKey
from handler.outcomes import Outcome

# The outcome in an operator's words, for the message's first line.
OUTCOME_WORDS: dict[str, str] = {
    Outcome.MAX_ATTEMPTS: "its retries are spent",
    Outcome.SKIPPED: "a rule said not to retry it",
    Outcome.BUDGET_EXHAUSTED: "the fleet's retry budget is spent",
    Outcome.REJECTED: "the Batch API refused to retry it",
}
REASON_CHARS = 300  # a StateReason can be long; the history command shows the rest


def history_command(job_id: str) -> str:
    return f"python -m handler ledger show {job_id}"


@dataclass(frozen=True)
class GiveUp:
    """One failure the function will not retry. `failure_key` is the message's identity: a failure
    is announced once."""

    failure_key: str
    job_id: str
    job_name: str | None
    region: str
    outcome: str
    reason: str
    rule: str
    retries_spent: int

    @classmethod
    def of(cls, key: FailureKey, *, outcome: str, reason: str, rule: str, retries_spent: int,
           job_name: str | None = None) -> GiveUp:
        return cls(str(key), key.job_id, job_name, key.region, str(outcome), reason[:REASON_CHARS],
                   rule, int(retries_spent))

    @property
    def end_time(self) -> str:
        return FailureKey.parse(self.failure_key).end_time

    @property
    def history(self) -> str:
        return history_command(self.job_id)

    @property
    def why(self) -> str:
        return OUTCOME_WORDS.get(self.outcome, self.outcome)

    @property
    def title(self) -> str:
        name = f"{self.job_name} ({self.job_id})" if self.job_name else self.job_id
        return f"Batch job given up: {name}"

    def fields(self) -> list[tuple[str, str]]:
        """The message's lines, in order, as (label, value)."""
        return [
            ("Job", self.job_id),
            ("Name", self.job_name or "-"),
            ("Region", self.region),
            ("Outcome", f"{self.outcome}: {self.why}"),
            ("Reason", self.reason or "-"),
            ("Rule", self.rule or "-"),
            ("Retries spent", str(self.retries_spent)),
            ("Failed at", self.end_time),
        ]

    def value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> GiveUp:
        return cls(
            failure_key=str(value["failure_key"]),
            job_id=str(value["job_id"]),
            job_name=value.get("job_name"),
            region=str(value["region"]),
            outcome=str(value["outcome"]),
            reason=str(value.get("reason") or ""),
            rule=str(value.get("rule") or ""),
            retries_spent=int(value.get("retries_spent") or 0),
        )
