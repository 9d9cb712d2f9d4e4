"""How the entry module keeps its parts between warm invocations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler import app
from handler.config import Config
from handler.jobs import JobRef


def open_files() -> set[str]:
    fds = Path("/proc/self/fd")
    out = set()
    for fd in fds.iterdir():
        try:
            out.add(os.readlink(fd))
        except OSError:
            continue
    return out


@pytest.fixture
def fresh() -> Iterator[None]:
    app.reset_runtime()
    yield
    app.reset_runtime()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
def test_a_changed_configuration_closes_the_old_store(tmp_path: Path, fresh: None) -> None:
    first_db, second_db = tmp_path / "first.db", tmp_path / "second.db"
    first = app.runtime(Config.from_env({"AUTORETRY_STORE": f"sqlite:///{first_db}"}))
    first.ledger.enqueue(JobRef("ap-guangzhou", "job-w1r1ng00"), event_name="JOB_FAILED", event_vars={})
    assert str(first_db) in open_files()

    second = app.runtime(Config.from_env({"AUTORETRY_STORE": f"sqlite:///{second_db}"}))

    assert second is not first
    assert str(first_db) not in open_files()


def test_an_unchanged_configuration_keeps_its_parts(tmp_path: Path, fresh: None) -> None:
    env = {"AUTORETRY_STORE": f"sqlite:///{tmp_path / 'l.db'}"}
    assert app.runtime(Config.from_env(env)) is app.runtime(Config.from_env(dict(env)))


def test_a_configuration_that_cannot_be_built_keeps_the_working_parts(
    tmp_path: Path, fresh: None
) -> None:
    from handler.config import ConfigError

    good = app.runtime(Config.from_env({"AUTORETRY_STORE": f"sqlite:///{tmp_path / 'l.db'}"}))
    with pytest.raises(ConfigError):
        app.runtime(Config.from_env({"AUTORETRY_STORE": "bogus://x"}))
    assert app.runtime(Config.from_env({"AUTORETRY_STORE": f"sqlite:///{tmp_path / 'l.db'}"})) is good
