"""Fail closed: a store that cannot be reached fails fast, names itself and never shows its
credentials; the function on it answers 5xx (or fails a timer's invocation), retries nothing and
logs one error naming the store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, Outcome
from handler import app
from handler.commands.serve import apigw_event
from handler.ledger import Store, StoreUnavailable, Write, open_store

from .conftest import REDIS_URL, SharedStore, function_env
from .servers import DUMMY_AWS_ENV

OPERATIONS: dict[str, Callable[[Store], object]] = {
    "get": lambda s: s.get(["q/x"]),
    "commit": lambda s: s.commit([Write("q/x", {}, 0, due_at=1.0)]),
    "due": lambda s: s.due(10.0, 10),
}


def _fails_closed(store: Store, operation: str) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        OPERATIONS[operation](store)
    assert time.monotonic() - started < 5.0
    return info.value


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_redis_on_a_closed_port_is_unavailable_fast_without_the_password(operation: str) -> None:
    store = open_store("redis://:s3cret@127.0.0.1:1/0")
    exc = _fails_closed(store, operation)
    assert "redis://127.0.0.1:1/0" in str(exc)
    assert "s3cret" not in str(exc)
    assert "s3cret" not in repr(exc.__cause__) and exc.__suppress_context__
    store.close()


def test_redis_refusing_the_credentials_is_unavailable_without_the_password() -> None:
    host = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    store = open_store(f"redis://nobody:s3cret-wrong@{host}/0")  # no such ACL user
    exc = _fails_closed(store, "get")
    assert f"redis://{host}/0" in str(exc)
    assert "s3cret" not in str(exc)
    store.close()


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_dynamodb_endpoint_refusing_is_unavailable_fast_naming_table_and_region(
        operation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret-key")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1")
    store = open_store("dynamodb://autoretry-ledger?region=ap-guangzhou")
    exc = _fails_closed(store, operation)
    assert "dynamodb://autoretry-ledger?region=ap-guangzhou" in str(exc)
    assert "s3cret" not in str(exc)
    store.close()


# ---- the function on an unreachable store: 503, nothing retried, one error naming the store ----

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = {
    # a path whose parent is a file: the database can never be opened
    "sqlite": "sqlite:///{tmp}/not-a-directory/ledger.db",
    "redis": "redis://:s3cret@127.0.0.1:1/0",
    "dynamodb": "dynamodb://autoretry-ledger?region=ap-guangzhou",
}
NAMED = {
    "sqlite": "sqlite:///{tmp}/not-a-directory/ledger.db",
    "redis": "redis://***@127.0.0.1:1/0",
    "dynamodb": "dynamodb://autoretry-ledger?region=ap-guangzhou",
}


@pytest.fixture(params=sorted(UNREACHABLE))
def unreachable(request: pytest.FixtureRequest, tmp_path: Path, emulator: Emulator,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The function's environment on a store it cannot reach, calling the emulator; yields the
    store's name as logs must give it."""
    backend = request.param
    (tmp_path / "not-a-directory").write_text("a file")
    for name in ("AUTORETRY_POLICY", "AUTORETRY_AUTH_TOKEN", "AUTORETRY_HMAC_SECRET"):
        monkeypatch.delenv(name, raising=False)
    env = function_env(SharedStore(backend, UNREACHABLE[backend].format(tmp=tmp_path)), emulator)
    if backend == "dynamodb":
        env.update(DUMMY_AWS_ENV, AWS_SECRET_ACCESS_KEY="s3cret-key",
                   AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app.reset_runtime()
    yield NAMED[backend].format(tmp=tmp_path)
    app.reset_runtime()


def _errors(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line["level"] == "ERROR"]


def _push(emu: Emulator, job: str) -> dict[str, Any]:
    notice = emu.notice(job)
    envelope = {"msgId": f"msg-{job}", "msgBody": json.dumps(notice), "topicName": "batch-events"}
    return apigw_event("POST", "/events", {"Content-Type": "text/plain"},
                       json.dumps(envelope).encode())


def test_a_notice_on_an_unreachable_store_is_answered_503_and_nothing_is_retried(
        unreachable: str, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    name = unreachable
    job = emulator.add_failed_job(name="spot", script=[Outcome.succeed()])
    started = time.monotonic()
    answer = app.main_handler(_push(emulator, job), {"time_limit_in_ms": 15000})
    assert time.monotonic() - started < 10
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"]) == {"error": "ledger unavailable; redeliver later"}
    assert emulator.calls == []  # nothing retried; not even a DescribeJobs
    out = capsys.readouterr().out
    [error] = _errors(out)  # logged once
    assert error["message"] == "ledger unavailable"
    assert error["store"] == name
    assert "s3cret" not in out + json.dumps(answer)


def test_a_timer_on_an_unreachable_store_fails_the_invocation_so_it_runs_again(
        unreachable: str, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    name = unreachable
    emulator.add_failed_job(name="spot", script=[Outcome.succeed()])
    timer = json.loads((ROOT / "events" / "scf-timer.json").read_text())
    with pytest.raises(app.RedeliverLater) as info:
        app.main_handler(timer, {"time_limit_in_ms": 15000})
    assert emulator.calls == []
    out = capsys.readouterr().out
    [error] = _errors(out)
    assert error["store"] == name
    assert "s3cret" not in out + str(info.value)
