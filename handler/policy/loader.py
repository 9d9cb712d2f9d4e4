"""Turns `AUTORETRY_POLICY` (a file path, or inline YAML/JSON) into a Policy.

Unset → the built-in DefaultPolicy, without importing YAML or the rule models (they are most of a
cold start's policy cost). Anything else must be a valid policy file; every problem is reported at
once, each naming its field path and what is allowed, in one PolicyError.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from handler.policy import DefaultPolicy, Policy

if TYPE_CHECKING:
    from handler.policy.engine import RulesPolicy
    from handler.policy.rules import PolicyFile


class PolicyError(ValueError):
    """The policy text is not valid; the message names the field and what is allowed."""


def load_policy(spec: str | None) -> Policy:
    if not spec or not spec.strip():
        return DefaultPolicy()
    return load_rules_policy(spec)


def load_rules_policy(spec: str) -> RulesPolicy:
    """A path to a .yaml/.yml/.json file, or the policy text itself."""
    from handler.policy.engine import RulesPolicy

    text, source = read_spec(spec)
    return RulesPolicy(parse_policy(text, source), source)


def parse_policy(text: str, source: str = "inline policy") -> PolicyFile:
    from handler.policy.parse import parse_policy as parse

    return parse(text, source)


def read_spec(spec: str) -> tuple[str, str]:
    stripped = spec.strip()
    one_line = "\n" not in stripped
    if one_line and not stripped.startswith("{"):
        path = Path(stripped).expanduser()
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8"), str(path)
            except (OSError, UnicodeDecodeError) as e:
                raise PolicyError(f"policy file {path}: cannot be read: {e}") from None
        if stripped.endswith((".yaml", ".yml", ".json")) or (": " not in stripped and "/" in stripped):
            raise PolicyError(f"policy file {stripped}: not found (AUTORETRY_POLICY is a path to a "
                              "policy file, or the policy's YAML/JSON text itself)")
    return spec, "inline policy"
