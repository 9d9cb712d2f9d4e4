"""Turns `AUTORETRY_POLICY` (a file path, or inline YAML/JSON) into a Policy."""

from __future__ import annotations

from handler.policy import DefaultPolicy, Policy


class PolicyError(ValueError):
    """The policy text is not valid; the message names the field and what is allowed."""


def load_policy(spec: str | None) -> Policy:
    if not spec or not spec.strip():
        return DefaultPolicy()
    raise PolicyError("policy files are not supported by this build; unset AUTORETRY_POLICY")
