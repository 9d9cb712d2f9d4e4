"""docs/deploy.md's SCF paths (A: queue pull, B: function URL), run as written against the emulator.

The `sh` blocks are taken from the document itself and run in bash from the checkout, one command
line at a time, each after the A1 block of exports. Only the values a reader fills in (A1's key,
region, store, B1's token, B2's push address) are swapped for the emulator's, and the tools are
pointed at the emulator by `AUTORETRY_DEPLOY_ENDPOINT` (deploy) and `AUTORETRY_TDMQ_ENDPOINT`
(wire). `deploy scf` builds the real zip; the emulator's SCF runs that zip on CPython 3.10 in
processes of its own, fired by its timers and its function URL, so the retries seen here are made
by the deployed code, not by the checkout.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator, Outcome
from emulator.scf_runtime import interpreter_for

from ..conftest import SECRET_ID, SECRET_KEY
from ..ledger.conftest import REDIS_URL, delete_redis_prefix

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
WIRE = "## 2. `python -m handler wire`: the topic, the queue, the subscription"
PATH_A, PATH_B = "## A. SCF: queue pull", "## B. SCF: function URL (push)"
SPEEDUP = 20.0  # an emulator minute is 3 s: the pull timer fires every 3 s
CHANGES = ("Create", "Update", "Attach", "Detach", "Delete", "Put", "Set")


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end > 0 else None]


def sh_blocks(title: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section(title), re.S)


def command_lines(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def filled(block: str, values: dict[str, str]) -> str:
    """The block with the values a reader fills in (`export NAME=value`) replaced."""
    for name, value in values.items():
        pattern = rf"(?m)(^export .*\b{name}=)(\$\([^)]*\)|'[^']*'|\S+)"
        quoted = shlex.quote(value)
        block = re.sub(pattern, lambda m, q=quoted: m[1] + q, block)
    return block


@pytest.fixture
def cloud() -> Iterator[Emulator]:
    if interpreter_for("Python3.10") is None:
        pytest.skip("no CPython 3.10 here to play SCF's Python3.10 runtime")
    with Emulator(secret_id=SECRET_ID, secret_key=SECRET_KEY, speedup=SPEEDUP) as emu:
        yield emu


@pytest.fixture
def store() -> Iterator[str]:
    prefix = f"autoretry-docs:{uuid.uuid4().hex[:10]}:"
    yield f"{REDIS_URL}?prefix={prefix}"
    delete_redis_prefix(prefix)


class Reader:
    """A reader at a shell: runs the document's commands with A1's exports in force."""

    def __init__(self, emu: Emulator, store: str) -> None:
        self.emu = emu
        self.values = {"TENCENTCLOUD_SECRET_ID": SECRET_ID, "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
                       "REGION": emu.region, "AUTORETRY_STORE": store}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTORETRY_", "TENCENTCLOUD_"))}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(ROOT)
        env["AUTORETRY_DEPLOY_ENDPOINT"] = emu.endpoint
        env["AUTORETRY_DEPLOY_PROTOCOL"] = "http"
        env["AUTORETRY_TDMQ_ENDPOINT"], env["AUTORETRY_TDMQ_PROTOCOL"] = emu.endpoint, "http"  # wire's
        self.env = env
        self.exports = sh_blocks(PATH_A)[0]
        assert self.exports.lstrip().startswith("export "), "A1 is the block of exports"

    def run(self, line: str, *, prelude: str = "", timeout_s: float = 600) -> str:
        script = "set -euo pipefail\n" + filled(self.exports + prelude, self.values) + "\n" + line
        done = subprocess.run(["bash", "-c", filled(script, self.values)], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)
        assert done.returncode == 0, (
            f"{line}\nexit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def changes(self) -> list[str]:
        """The changing calls the emulator has answered without an error, in order."""
        return [c["action"] for c in self.emu.calls
                if c["action"].startswith(CHANGES) and c["error"] is None]


def wait_for(what: str, check: Callable[[], Any], within_s: float = 90.0) -> Any:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {within_s:g} s: {what}")


def retries_of(emu: Emulator, job_id: str) -> int:
    return sum(1 for c in emu.calls if c["action"] == "RetryJobs" and c["error"] is None
               and job_id in ((c.get("params") or {}).get("JobIds") or []))


def url_runs(emu: Emulator) -> list[dict[str, Any]]:
    return [i for i in emu.scf.invocations("batch-autoretry") if i["trigger"].startswith("url:")]


def test_scf_paths_of_the_deploy_doc_run_as_written_and_the_deployed_zip_retries_once(
    cloud: Emulator, store: str
) -> None:
    reader = Reader(cloud, store)
    install, dry_run, deploy = command_lines(sh_blocks(PATH_A)[1])
    assert "--dry-run" in dry_run and "--dry-run" not in deploy

    reader.run(install)
    out = reader.run(dry_run)
    assert "would call" in out and reader.changes() == []
    out = reader.run(deploy)
    assert "created" in out
    created = reader.changes()
    for action in ("CreateRole", "CreatePolicy", "AttachRolePolicy", "CreateFunction",
                   "CreateCmqTopic", "CreateCmqQueue", "CreateCmqSubscribe"):
        assert action in created, f"{action} not called: {created}"
    assert created.count("CreateTrigger") == 2

    # A3: a job fails; the deployed zip's pull timer takes its notice from the queue and retries it.
    job = cloud.add_failed_job("render", [Outcome.succeed()])  # a retry succeeds
    cloud.publish(job, topic="batch-events")
    wait_for(f"{job} retried by the deployed function", lambda: retries_of(cloud, job))
    (verify,) = command_lines(sh_blocks(PATH_A)[2])
    assert job in reader.run(verify)

    # B1: the same deploy with a function URL and a token; a second run changes nothing. The
    # reader makes the token once: the test runs that line, then keeps one value for what follows.
    token_line, url_deploy = command_lines(sh_blocks(PATH_B)[0])
    assert re.fullmatch(r"[0-9a-f]{64}", reader.run(f'{token_line}; echo "$AUTORETRY_AUTH_TOKEN"').strip())
    reader.values["AUTORETRY_AUTH_TOKEN"] = uuid.uuid4().hex * 2
    before = len(reader.changes())
    reader.run(url_deploy, prelude="\n" + token_line)
    assert "CreateTrigger" in reader.changes()[before:]
    urls = wait_for("a function URL", cloud.function_urls, within_s=10)
    before = len(reader.changes())
    again = reader.run(url_deploy, prelude="\n" + token_line)
    assert reader.changes()[before:] == [], again
    assert "up to date" in again

    # B2: the push subscribed to the function URL, verified; a failure now arrives both ways and the
    # job is retried once.
    reader.values["PUSH_URL"] = urls[0].rstrip("/") + "/events"
    push_block = sh_blocks(PATH_B)[1]
    exports = "\n" + token_line + "\n" + push_block.splitlines()[0]
    for line in command_lines(push_block)[1:]:
        reader.run(line, prelude=exports)
    pushes_before = len(url_runs(cloud))
    second = cloud.add_failed_job("render-2", [Outcome.succeed()])
    cloud.publish(second, topic="batch-events")
    wait_for(f"{second} retried", lambda: retries_of(cloud, second))
    wait_for("the topic's push reached the function URL and was answered",
             lambda: any(i["ok"] for i in url_runs(cloud)[pushes_before:]))

    # Both jobs: once each, however many ticks and pushes came since.
    time.sleep(3 * 60 / SPEEDUP)
    assert (retries_of(cloud, job), retries_of(cloud, second)) == (1, 1), (
        [(round(c["t"], 2), c["params"], c["request_id"]) for c in cloud.calls if c["action"] == "RetryJobs"],
        reader.run(verify))

    # A4: teardown leaves nothing; a second one changes nothing.
    dry, down = command_lines(sh_blocks(PATH_A)[3])
    before = len(reader.changes())
    reader.run(dry)
    assert reader.changes()[before:] == []
    reader.run(down)
    assert cloud.scf.functions == {} and cloud.cmq.queues == {} and cloud.cmq.topic_names == {}
    assert cloud.cam.roles == {} and cloud.cam.policies == {}
    before = len(reader.changes())
    reader.run(down)
    assert reader.changes()[before:] == []


def test_the_wire_section_runs_as_written(cloud: Emulator, store: str) -> None:
    """Section 2's block: a dry run that creates nothing, the queue wiring, and an HTTP push beside
    it under its own subscription name."""
    reader = Reader(cloud, store)
    (block,) = sh_blocks(WIRE)
    exports, dry_run, queue, push = command_lines(block)
    reader.exports = exports  # this section's own line of exports
    assert "--dry-run" in dry_run and "would call" in reader.run(dry_run)
    assert reader.changes() == []
    reader.run(queue)
    reader.run(push)
    assert set(cloud.cmq.queues) == {"batch-autoretry", "batch-autoretry-dead-letters"}
    subscriptions = {(s.name, s.protocol) for s in cloud.cmq.subscriptions.values()}
    assert subscriptions == {("batch-autoretry", "queue"), ("batch-autoretry-push", "http")}, subscriptions
