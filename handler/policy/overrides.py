"""Per-job overrides, read from the job's tags and the notice's EventVars.

Keys: `autoretry:disabled` (true → never retried), `autoretry:max-attempts` (a whole number for the
job's RETRY cap), `autoretry:policy-rule` (apply the named rule as if it matched). Values are read
case-insensitively (`TRUE`, `Yes`).

Tags are set by whoever submits the job and keep every power. EventVars travel in the notice, which
anyone who can publish to the topic can forge, so they may only make the function do less: disable
retries, or lower the cap. A notice that asks for a higher cap or names a rule is ignored and noted.

A value that cannot be used is ignored and noted, never fatal: one job's typo must not stop the
policy for the rest of the fleet.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

PREFIX = "autoretry:"
DISABLED = "autoretry:disabled"
MAX_ATTEMPTS = "autoretry:max-attempts"
POLICY_RULE = "autoretry:policy-rule"
KEYS = (DISABLED, MAX_ATTEMPTS, POLICY_RULE)
MAX_ATTEMPTS_OVERRIDE = 100  # a job may ask for more than the policy's cap, but not unbounded
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class JobOverrides:
    disabled_by: str | None = None  # e.g. "tag autoretry:disabled='true'"
    max_attempts: int | None = None  # from a tag: replaces the cap, up or down
    max_attempts_by: str | None = None
    lower_to: int | None = None  # from an event var: the cap, if that is lower
    lower_by: str | None = None
    rule: str | None = None  # from a tag only
    rule_by: str | None = None
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cap:
    cap: int
    source: str | None  # the override that set it, or None for the policy's own
    ignored: tuple[str, ...] = ()


def apply_cap(policy_cap: int, ov: JobOverrides) -> Cap:
    """The RETRY cap on `attempts`: the tag's if set, else the policy's; then an event var may only
    lower it."""
    cap, source = (ov.max_attempts, ov.max_attempts_by) if ov.max_attempts is not None \
        else (policy_cap, None)
    if ov.lower_to is None:
        return Cap(cap, source)
    if ov.lower_to < cap:
        return Cap(ov.lower_to, ov.lower_by)
    if ov.lower_to == cap:
        return Cap(cap, source)
    return Cap(cap, source, (f"{ov.lower_by}: a notice may only lower the cap ({cap}), never raise "
                             "it; set a higher cap as a job tag",))


def read_overrides(tags: Mapping[str, str], event_vars: Mapping[str, str], *, use_tags: bool,
                   use_event_vars: bool, rule_names: Collection[str]) -> JobOverrides:
    """Overrides from the enabled sources. `disabled` holds if either source says true (a kill
    switch is never switched back on)."""
    disabled_by = max_by = lower_by = rule = rule_by = None
    max_attempts: int | None = None
    lower_to: int | None = None
    ignored: list[str] = []
    sources = [(kind, values) for kind, values, on in (("tag", tags, use_tags),
                                                       ("event var", event_vars, use_event_vars))
               if on]
    for kind, values in sources:
        for key, raw in values.items():
            name = str(key).strip().lower()
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
                number = _whole_number(value)
                if number is None:
                    ignored.append(f"{said}: expected a whole number from 0 to {MAX_ATTEMPTS_OVERRIDE}")
                elif kind == "tag":
                    max_attempts, max_by = number, said
                elif lower_to is None or number < lower_to:
                    lower_to, lower_by = number, said
            elif name == POLICY_RULE:
                if kind != "tag":
                    ignored.append(f"{said}: a notice cannot choose a rule; set it as a job tag")
                elif value in rule_names:
                    rule, rule_by = value, said
                else:
                    known = ", ".join(sorted(rule_names)) or "none"
                    ignored.append(f"{said}: no rule of that name (rules: {known})")
            else:
                ignored.append(f"{said}: unknown key; known: {', '.join(KEYS)}")
    return JobOverrides(disabled_by, max_attempts, max_by, lower_to, lower_by, rule, rule_by,
                        tuple(ignored))


def unreadable_tags(tags: Mapping[str, str], rule_names: Collection[str]) -> list[str]:
    """Every `autoretry:*` tag whose key or value is not understood, as `ignored` notes."""
    return list(read_overrides(tags, {}, use_tags=True, use_event_vars=False,
                               rule_names=rule_names).ignored)


def _whole_number(value: str) -> int | None:
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
    if re.fullmatch(r"[0-9]{1,4}", value) and int(value) <= MAX_ATTEMPTS_OVERRIDE:
        return int(value)
    return None
