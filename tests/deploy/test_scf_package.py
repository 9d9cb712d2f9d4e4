"""Tencent SCF: what `deploy scf` creates (handler, runtime, timers, variables), the CAM
policy, and the zip that deploy/scf/build.py builds, run on CPython 3.10 (SCF's newest Python
runtime) the way SCF would import it."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler import app
from handler.deploy import function, triggers
from handler.gateway import RATE_LIMITS

from ..ledger.conftest import REDIS_URL, delete_redis_prefix, redis_prefix

ROOT = Path(__file__).resolve().parents[2]
SCF = ROOT / "deploy" / "scf"
EVENTS = ROOT / "events"


def test_the_function_runs_main_handler_on_python_3_10() -> None:
    assert (function.HANDLER, function.RUNTIME) == ("index.main_handler", "Python3.10")
    spec = importlib.util.spec_from_file_location("scf_index", SCF / "index.py")
    assert spec and spec.loader
    index = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(index)
    assert index.main_handler is app.main_handler


def test_no_trigger_depends_on_the_retired_api_gateway() -> None:
    # SCF's API Gateway trigger is offline since 2025-06-30; a push arrives by the function URL.
    assert {t.type for t in triggers.OURS.values()} == {"timer", "http"}


def test_timers_pull_the_queue_and_sweep_every_minute() -> None:
    from handler.ingress import is_pull_tick

    timers = {t.argument: t for t in triggers.TIMERS}
    assert set(timers) == {"pull", "sweep"}
    assert timers["pull"].desc.split() == ["0"] + ["*"] * 6
    second, minute, *rest = timers["sweep"].desc.split()
    # every minute, half a minute after the pull: the sweep's cursor needs a walk a minute
    assert (second, minute, rest) == ("30", "*", ["*"] * 5)
    # SCF hands the argument to the function as the timer event's Message.
    tick = {"Type": "Timer", "TriggerName": timers["pull"].name, "Message": timers["pull"].argument}
    assert is_pull_tick(tick) and not is_pull_tick(tick | {"Message": "sweep"})


def test_environment_names_are_ones_the_function_reads() -> None:
    config_source = "".join((ROOT / "handler" / n).read_text()
                            for n in ("config.py", "cmq.py", "app.py", "tags.py", "auth.py"))
    assert {"AUTORETRY_STORE", "AUTORETRY_QUEUE", "AUTORETRY_LEDGER_ID"} <= function.OWNED
    for name in function.OWNED - {"AUTORETRY_CODE_SHA256"}:  # the digest is deploy's own mark
        assert f'"{name}"' in config_source, f"{name} is set but never read"


def test_role_may_call_exactly_the_batch_actions_the_function_uses() -> None:
    policy = json.loads((SCF / "cam-policy.json").read_text())
    assert policy["version"] == "2.0"
    statement, queue, invoke = policy["statement"]
    assert statement["effect"] == "allow"
    assert statement["resource"] == ["*"]
    assert set(statement["action"]) == {"name/batch:RetryJobs", "name/batch:DescribeJob",
                                        "name/batch:DescribeJobs", "name/batch:DescribeTask"}
    assert set(statement["action"]) == {f"name/batch:{action}" for action in RATE_LIMITS}
    # The queue pull: receive and delete on the one queue, in one region (doc 1111/43005 gives
    # the resource form); the owner's UIN is filled in when the policy is created.
    assert queue["effect"] == "allow"
    assert set(queue["action"]) == {"name/tdmq:BatchReceiveMessage", "name/tdmq:BatchDeleteMessage"}
    assert queue["resource"] == ["qcs::tdmq:ap-guangzhou:uin/OWNER_UIN:queue/batch-autoretry"]
    # An HTTP push is answered within 10 s; the rest is drained by the function invoking itself
    # asynchronously (handler/continuation.py), and only itself.
    assert invoke["action"] == ["name/scf:InvokeFunction"]  # CAM's name for Invoke (doc 583/18014)
    assert invoke["resource"] == [
        "qcs::scf:ap-guangzhou:uin/OWNER_UIN:namespace/default/function/batch-autoretry-*"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scf")
    done = subprocess.run([sys.executable, str(SCF / "build.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout.strip())
    return out / "batch-autoretry-scf.zip"


def test_scf_zip_holds_the_entry_file_the_function_and_runtime_dependencies(built: Path) -> None:
    names = zipfile.ZipFile(built).namelist()
    assert "index.py" in names and "handler/app.py" in names and "handler/auth.py" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert {"pydantic", "pydantic_core", "tencentcloud", "redis", "yaml", "requests"} <= tops
    assert not tops & {"tests", "emulator", "bench", "docs", "events", "deploy", "node_modules",
                       "moto", "boto3", "botocore", "pytest", "hypothesis", "mypy", "ruff"}
    assert any(re.search(r"pydantic_core/_pydantic_core\.cpython-310-x86_64-linux-gnu\.so$", n)
               for n in names)
    assert not any("__pycache__" in n for n in names)
    assert built.stat().st_size < 50_000_000  # SCF's limit for a zip uploaded through the API


def test_scf_zip_is_reproducible(built: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("scf_build", SCF / "build.py")
    assert spec and spec.loader
    scf_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scf_build)
    again = tmp_path / "again.zip"
    scf_build.write_zip(built.parent / "package", again)
    assert again.read_bytes() == built.read_bytes()


SMOKE = """
import json, sys, time
import index
from handler import app
from handler.config import Config
from handler.jobs import JobView

class Batch:  # the Batch API, in memory: every job FAILED a few seconds ago until retried
    timeout_s = 1
    def __init__(self): self.retried = []
    def _view(self, job):
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
        state = "RUNNING" if job in self.retried else "FAILED"
        return JobView.model_validate({"JobId": job, "JobState": state, "EndTime": end})
    def describe_jobs(self, region, ids): return {j: self._view(j) for j in ids}
    def list_jobs(self, region, state, offset, limit=100): return [], 0
    def describe_job(self, region, job_id): raise AssertionError("not needed")
    def retry_jobs(self, region, ids): self.retried += ids; return "req-1"

batch = Batch()
rt = app.build_runtime(Config.from_env(), gateway=batch)
assert index.main_handler is app.main_handler
answers = [app.handle(json.load(open(p)), {"request_id": "smoke", "time_limit_in_ms": 15000},
                      platform="scf", runtime=rt)
           for p in sys.argv[1:]]
print(json.dumps({"python": sys.version_info[:2], "status": [a["statusCode"] for a in answers],
                  "retried": batch.retried}))
"""


def python_3_10() -> str | None:
    candidates = [shutil.which("python3.10"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))]
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    return None


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store the function runs on in SCF: the embedded one, and the shared Redis (whose client
    needs async-timeout below Python 3.11.3)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    prefix = redis_prefix()
    yield f"{REDIS_URL}?prefix={prefix}"
    delete_redis_prefix(prefix)


def test_scf_zip_answers_notices_on_python_3_10(built: Path, tmp_path: Path, store: str) -> None:
    exe = python_3_10()
    if exe is None:
        pytest.skip("no CPython 3.10 interpreter here to play SCF's Python3.10 runtime")
    code = tmp_path / "code"
    zipfile.ZipFile(built).extractall(code)
    (tmp_path / "smoke.py").write_text(SMOKE)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(code), "AUTORETRY_LOCAL": "true",
           "AUTORETRY_STORE": store}
    samples = [str(EVENTS / n) for n in ("scf-apigw-push-envelope.json", "scf-cmq-records.json",
                                         "scf-timer.json", "scf-apigw-push-envelope.json")]
    # -S: no site-packages, so only the zip's own dependencies can be imported.
    done = subprocess.run([exe, "-S", str(tmp_path / "smoke.py"), *samples], cwd=code, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"python": [3, 10], "status": [200, 200, 200, 200],
                      "retried": ["job-a1b2c3d4", "job-1b2c3d4e", "job-2c3d4e5f"]}
