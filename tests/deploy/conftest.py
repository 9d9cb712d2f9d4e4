"""The function as deployed, with its Batch API replaced by the in-memory FakeGateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import app, auth
from handler.config import Config
from tests.core.fakes import FakeGateway


class LambdaContext:
    """Just enough of AWS's context object."""

    def __init__(self, seconds: float = 15.0) -> None:
        self._end = time.time() + seconds
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.time()) * 1000)


def scf_context(seconds: float = 15.0) -> dict[str, Any]:
    return {"request_id": str(uuid.uuid4()), "time_limit_in_ms": int(seconds * 1000)}


def recent_end(ago: float = 5.0) -> str:
    """An EndTime a few seconds ago, as DescribeJobs reports it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - ago))


def deploy(monkeypatch: pytest.MonkeyPatch, token: str, secret: str | None = None) -> None:
    """Configure the function as deployed, not local: `token` (and an HMAC `secret`) set for the
    HTTP trigger, and a fresh replay memory."""
    monkeypatch.setenv("AUTORETRY_LOCAL", "false")
    monkeypatch.setenv("AUTORETRY_AUTH_TOKEN", token)
    if secret is not None:
        monkeypatch.setenv("AUTORETRY_HMAC_SECRET", secret)
    monkeypatch.setattr(app, "_replay_guard", auth.ReplayGuard())


@pytest.fixture
def fake_batch(function_env: Path) -> FakeGateway:
    """The Batch API every delivery through `function` talks to."""
    return FakeGateway()


class Deployed:
    """Both entry points, wired to a gateway as the platform would call them. The parts are built
    from the environment at the first delivery (fixtures may still set variables before it) and
    rebuilt when it changes, as a warm instance would."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self._built: app.Runtime | None = None

    def runtime(self) -> app.Runtime:
        config = Config.from_env()
        if self._built is None or self._built.config != config:
            self.close()
            self._built = app.build_runtime(config, gateway=self.gateway)
        return self._built

    def main_handler(self, event: Any, context: Any = None) -> dict[str, Any]:
        return app.handle(event, context, platform="scf", runtime=self.runtime())

    def lambda_handler(self, event: Any, context: Any = None) -> dict[str, Any]:
        return app.handle(event, context, platform="aws", runtime=self.runtime())

    def close(self) -> None:
        if self._built is not None:
            self._built.close()
            self._built = None


@pytest.fixture
def function(fake_batch: FakeGateway) -> Iterator[Deployed]:
    deployed = Deployed(fake_batch)
    yield deployed
    deployed.close()
