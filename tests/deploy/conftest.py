"""The function as deployed, with its Batch API replaced by the in-memory FakeGateway."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from handler import app
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


@pytest.fixture
def fake_batch(function_env: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """Every runtime the entry points build talks to this fake instead of the Batch API."""
    gw = FakeGateway()
    build = app.build_runtime

    def build_with_fake(config: Config) -> app.Runtime:
        rt = build(config)
        rt.gateway = gw
        return rt

    monkeypatch.setattr(app, "build_runtime", build_with_fake)
    return gw
