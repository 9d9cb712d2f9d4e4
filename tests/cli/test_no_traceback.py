"""Wrong input a user can fix gets one line on stderr (what is wrong, what to set) and a non-zero
exit, never a traceback: each command is run as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.local import free_port as closed_port  # a loopback port nobody listens on
from emulator import Emulator
from handler.ledger import open_store

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
PASSWORD = "s3cret-pw"
CREDENTIALS = {"TENCENTCLOUD_SECRET_ID": "AKIDNOTUSED", "TENCENTCLOUD_SECRET_KEY": "not-used"}


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_", "AWS_"))}
    # No AWS region from the environment or a config file: boto3 must find none.
    clean |= {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "none"),
              "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), **env}
    return subprocess.run([sys.executable, "-m", "handler", *args], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=60)


def assert_one_line(done: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.returncode != 0
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert PASSWORD not in done.stdout + done.stderr
    return lines[0]


STORE_COMMANDS = [
    ("ledger", "stats"), ("ledger", "list"), ("ledger", "show", "job-3k9x2m1a"), ("sweep",),
    ("invoke", str(EVENTS / "scf-timer.json")), ("invoke", str(EVENTS / "scf-cmq-records.json")),
]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_an_unknown_store_scheme_is_one_line_naming_the_schemes(tmp_path: Path, command: tuple[str, ...]
                                                                ) -> None:
    done = run(tmp_path, *command, AUTORETRY_STORE="bogus://x", **CREDENTIALS)
    assert_one_line(done, "AUTORETRY_STORE", "bogus://x", "sqlite:///path")


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_a_dynamodb_table_without_a_region_is_one_line_naming_aws_region(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    done = run(tmp_path, *command, AUTORETRY_STORE="dynamodb://tbl", **CREDENTIALS)
    assert_one_line(done, "dynamodb://tbl", "AWS_REGION")


@pytest.mark.parametrize("command", [c for c in STORE_COMMANDS if c[0] in ("sweep", "invoke")],
                         ids=" ".join)
def test_an_unreachable_redis_is_one_line_naming_the_store_without_its_password(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    store = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"
    done = run(tmp_path, *command, AUTORETRY_STORE=store, **CREDENTIALS)
    assert_one_line(done, "ledger unavailable", "AUTORETRY_STORE", "127.0.0.1")


def test_invoke_of_a_queue_batch_the_function_fails_says_the_platform_would_redeliver(
        tmp_path: Path) -> None:
    store = f"redis://127.0.0.1:{closed_port()}/0"
    done = run(tmp_path, "invoke", str(EVENTS / "scf-cmq-records.json"), AUTORETRY_STORE=store)
    line = assert_one_line(done, "deliver it again")
    assert "RedeliverLater" not in line


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_store(url).close()
    return url


@pytest.mark.parametrize("policy", ["/no/such/policy.yaml", "{not: [valid"], ids=["missing", "broken"])
def test_sweep_with_a_bad_policy_is_one_line_naming_autoretry_policy(
        tmp_path: Path, sqlite_store: str, policy: str) -> None:
    done = run(tmp_path, "sweep", AUTORETRY_STORE=sqlite_store, AUTORETRY_POLICY=policy,
               **CREDENTIALS)
    assert_one_line(done, "AUTORETRY_POLICY")


@pytest.mark.parametrize("policy", ["/no/such/policy.yaml", "{not: [valid"], ids=["missing", "broken"])
def test_ledger_stats_does_not_need_the_policy(tmp_path: Path, sqlite_store: str, policy: str
                                               ) -> None:
    done = run(tmp_path, "ledger", "stats", AUTORETRY_STORE=sqlite_store, AUTORETRY_POLICY=policy)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "queue_depth" in done.stdout


def test_ledger_commands_refuse_a_sqlite_file_that_is_not_there(tmp_path: Path) -> None:
    done = run(tmp_path, "ledger", "show", "job-3k9x2m1a")
    line = assert_one_line(done, "no ledger at", f"relative to {tmp_path}", "AUTORETRY_STORE")
    assert str(tmp_path / "var" / "autoretry.db") in line
    assert not (tmp_path / "var" / "autoretry.db").exists()  # not made empty by looking


def test_sweep_without_credentials_names_the_variables_to_set(tmp_path: Path, sqlite_store: str
                                                              ) -> None:
    done = run(tmp_path, "sweep", AUTORETRY_STORE=sqlite_store)
    assert_one_line(done, "no Tencent Cloud credentials", "TENCENTCLOUD_SECRET_ID",
                    "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_SECRETID")
    assert "jobs verified" not in done.stdout


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(secret_id="AKIDRIGHT", secret_key="right-key") as emu:
        emu.add_failed_job("stays-failed")
        yield emu


@pytest.mark.parametrize(("secret_id", "secret_key"), [("AKIDRIGHT", "wrong-key"),
                                                       ("AKIDWRONG", "right-key")])
def test_sweep_with_credentials_the_api_refuses_names_them_and_retries_nothing(
        tmp_path: Path, sqlite_store: str, emulator: Emulator, secret_id: str, secret_key: str
        ) -> None:
    done = run(tmp_path, "sweep", AUTORETRY_STORE=sqlite_store,
               AUTORETRY_BATCH_ENDPOINT=emulator.endpoint, AUTORETRY_BATCH_PROTOCOL="http",
               TENCENTCLOUD_SECRET_ID=secret_id, TENCENTCLOUD_SECRET_KEY=secret_key)
    line = assert_one_line(done, "refused the credentials", "AuthFailure", "TENCENTCLOUD_SECRET_ID")
    assert secret_key not in line
    assert "jobs verified" not in done.stdout
    assert emulator.count("RetryJobs") == 0


def test_sweep_with_accepted_credentials_still_sweeps(tmp_path: Path, sqlite_store: str,
                                                      emulator: Emulator) -> None:
    done = run(tmp_path, "sweep", "--seconds", "20", AUTORETRY_STORE=sqlite_store,
               AUTORETRY_BATCH_ENDPOINT=emulator.endpoint, AUTORETRY_BATCH_PROTOCOL="http",
               TENCENTCLOUD_SECRET_ID="AKIDRIGHT", TENCENTCLOUD_SECRET_KEY="right-key")
    assert done.returncode == 0, done.stderr
    assert "sweep: 1 jobs verified, 1 retried" in done.stdout
    assert emulator.count("RetryJobs") == 1
