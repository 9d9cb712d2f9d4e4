"""Per-job overrides, read from the job's tags and the notice's EventVars.

Keys: `autoretry:disabled` (true → never retried), `autoretry:max-attempts` (a whole number that
replaces the job's RETRY cap), `autoretry:policy-rule` (apply the named rule as if it matched). A
value that cannot be used is ignored and noted, never fatal: one job's typo must not stop the
policy for the rest of the fleet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

PREFIX = "autoretry:"
DISABLED = "autoretry:disabled"
MAX_ATTEMPTS = "autoretry:max-attempts"
POLICY_RULE = "autoretry:policy-rule"
MAX_ATTEMPTS_OVERRIDE = 100  # a job may ask for more than the policy's cap, but not unbounded
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class JobOverrides:
    disabled_by: str | None = None  # e.g. "tag autoretry:disabled=true"
    max_attempts: int | None = None
    max_attempts_by: str | None = None
    rule: str | None = None
    rule_by: str | None = None
    ignored: tuple[str, ...] = ()


def read_overrides(tags: Mapping[str, str], event_vars: Mapping[str, str], *, use_tags: bool,
                   use_event_vars: bool, rule_names: Collection[str]) -> JobOverrides:
    """Overrides from the enabled sources. Where both give a key, the event var wins — except that
    `disabled` holds if either source says true (a kill switch is never switched back on)."""
    sources: list[tuple[str, Mapping[str, str]]] = []
    if use_tags:
        sources.append(("tag", tags))
    if use_event_vars:
        sources.append(("event var", event_vars))
    disabled_by = max_by = rule = rule_by = None
    max_attempts: int | None = None
    ignored: list[str] = []
    for kind, values in sources:
        for key, raw in values.items():
            name = key.strip().lower()
            if not name.startswith(PREFIX):
                continue
            value = str(raw).strip()
            said = f"{kind} {key}={value!r}"
            if name == DISABLED:
                if value.lower() in _TRUE:
                    disabled_by = disabled_by or said
                elif value.lower() not in _FALSE:
                    ignored.append(f"{said}: expected true or false")
            elif name == MAX_ATTEMPTS:
                if value.isdigit() and int(value) <= MAX_ATTEMPTS_OVERRIDE:
                    max_attempts, max_by = int(value), said
                else:
                    ignored.append(f"{said}: expected a whole number from 0 to {MAX_ATTEMPTS_OVERRIDE}")
            elif name == POLICY_RULE:
                if value in rule_names:
                    rule, rule_by = value, said
                else:
                    known = ", ".join(sorted(rule_names)) or "none"
                    ignored.append(f"{said}: no rule of that name (rules: {known})")
            else:
                ignored.append(f"{said}: unknown key; known: {DISABLED}, {MAX_ATTEMPTS}, {POLICY_RULE}")
    return JobOverrides(disabled_by, max_attempts, max_by, rule, rule_by, tuple(ignored))
