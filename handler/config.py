"""The function's configuration, read from `AUTORETRY_*` environment variables in one place."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from handler.notices import REGION_PATTERN

LOCAL_STORE = "sqlite:///var/autoretry.db"
CLOUD_FALLBACK_STORE = "sqlite:////tmp/autoretry.db"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting is wrong; the message names the variable and what it accepts."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def env_number(env: Mapping[str, str], name: str, default: float, low: float, high: float,
               what: str = "a number") -> float:
    """The number in variable `name` (`default` when unset or blank); anything but a number from
    `low` to `high` is a ConfigError saying `what` it takes."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan  # no number: in no range
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r}: expected {what} from {low:g} to {high:g}")
    return value


def in_cloud(env: Mapping[str, str]) -> bool:
    return env.get("TENCENTCLOUD_RUNENV") == "SCF" or "AWS_LAMBDA_FUNCTION_NAME" in env


def env_secret(env: Mapping[str, str], name: str) -> str | None:
    # A credential of blanks would be matched by a request presenting blanks: blank is unset.
    return env.get(name, "").strip() or None


def _local(env: Mapping[str, str]) -> bool:
    local = _flag(env, "AUTORETRY_LOCAL")
    if local and in_cloud(env):
        # Local mode lets unauthenticated requests in; on a platform anyone can reach that is a
        # hole, whatever else is configured.
        raise ConfigError("AUTORETRY_LOCAL=true is for a local run and is refused on SCF or Lambda "
                          "(TENCENTCLOUD_RUNENV=SCF or AWS_LAMBDA_FUNCTION_NAME is set): remove it "
                          "and set AUTORETRY_AUTH_TOKEN or AUTORETRY_HMAC_SECRET")
    return local


@dataclass(frozen=True)
class Config:
    store: str
    policy: str | None
    regions: tuple[str, ...]
    batch_endpoint: str | None
    batch_protocol: str
    auth_token: str | None
    auth_hmac_secret: str | None
    local: bool
    dry_run: bool
    retention_s: float
    api_speedup: float
    # The identity `python -m handler ledger init` printed: a ledger without it forgot (see
    # docs/ledger.md, "What the ledger may forget"). None: the ledger initialises itself.
    ledger_id: str | None = None

    @property
    def default_region(self) -> str:
        return self.regions[0]

    def __repr__(self) -> str:  # secrets stay out of any log line that prints the config
        from handler.ledger import describe_store

        return (f"Config(store={describe_store(self.store)!r}, regions={self.regions}, "
                f"endpoint={self.batch_endpoint!r}, dry_run={self.dry_run})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        store = env.get("AUTORETRY_STORE", "").strip()
        if not store:
            store = CLOUD_FALLBACK_STORE if in_cloud(env) else LOCAL_STORE
        regions = tuple(r.strip() for r in env.get("AUTORETRY_REGION", "ap-guangzhou").split(",")
                        if r.strip())
        for r in regions or ("",):
            if not re.match(REGION_PATTERN, r):
                raise ConfigError(f"AUTORETRY_REGION={r!r}: expected a region such as ap-guangzhou "
                                  "(several separated by commas)")
        protocol = env.get("AUTORETRY_BATCH_PROTOCOL", "https").strip().lower() or "https"
        if protocol not in ("https", "http"):
            raise ConfigError(f"AUTORETRY_BATCH_PROTOCOL={protocol!r}: expected https or http")
        endpoint = env.get("AUTORETRY_BATCH_ENDPOINT", "").strip() or None
        if endpoint and not re.match(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$", endpoint):
            raise ConfigError(f"AUTORETRY_BATCH_ENDPOINT={endpoint!r}: expected host or host:port")
        return cls(
            store=store,
            policy=env.get("AUTORETRY_POLICY") or None,
            regions=regions,
            batch_endpoint=endpoint,
            batch_protocol=protocol,
            auth_token=env_secret(env, "AUTORETRY_AUTH_TOKEN"),
            auth_hmac_secret=env_secret(env, "AUTORETRY_HMAC_SECRET"),
            local=_local(env),
            dry_run=_flag(env, "AUTORETRY_DRY_RUN"),
            retention_s=env_number(env, "AUTORETRY_RETENTION_HOURS", 72, 25, 24 * 400) * 3600,
            api_speedup=env_number(env, "AUTORETRY_API_SPEEDUP", 1.0, 0.01, 10000),
            ledger_id=env.get("AUTORETRY_LEDGER_ID", "").strip() or None,
        )
