"""Cold start, side by side: N fresh interpreters each import the entry module and answer one failure
notice, for this function's stack and for a naive one; then the deployment package sizes.

    .venv/bin/python bench/coldstart.py            # N=10
    .venv/bin/python bench/coldstart.py -n 20 --skip-naive-size
    .venv/bin/python bench/coldstart.py -n 20 --no-naive   # this stack only: the two ratios

It prints two ratios against a bare interpreter's start (median wall time, interleaved runs):
importing the entry module, and importing it plus answering the first notice.

What one run does, in a new process (wall time measured by the parent, spawn to exit):
  import handler.app, then main_handler (or lambda_handler) with events/scf-apigw-push-envelope.json
  on a fresh SQLite ledger: enqueue, claim, one RetryJobs, record. The Batch API is an in-memory
  stub, but the real SDK client is built (with dummy credentials) as the first real call would,
  so the SDK's import is counted. No network.
The naive stack runs the same function and notice in a separate venv holding the full
`tencentcloud-sdk-python`, boto3 and Powertools, and first does what a naive entry module does at
import: the full SDK's client imported eagerly, Powertools Logger and Metrics, and the idempotency
utility with a DynamoDB persistence layer (a boto3 client built; no call made).
The naive venv is created on first use under /tmp (about a minute: the full SDK is ~19 MB of wheel).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTICE = ROOT / "events" / "scf-apigw-push-envelope.json"
NAIVE_VENV = Path(tempfile.gettempdir()) / "autoretry-coldstart-naive"
# The same pins as requirements.txt where they overlap; the full SDK at the slim common's version.
NAIVE_REQUIREMENTS = ["tencentcloud-sdk-python==3.1.195", "aws-lambda-powertools==3.37.0",
                      "boto3==1.44.8", "pydantic==2.14.4", "PyYAML==6.0.4"]

STUB = r"""
import time
from handler import app
from handler.gateway import BatchGateway, Credentials
from handler.jobs import JobView

class Batch:
    # The Batch API in memory: the job FAILED 5 s ago until retried. The real SDK client is built
    # on the first call, as the real gateway would (dummy credentials, no request sent).
    timeout_s = 5
    def __init__(self):
        self.retried = []
        self.real = BatchGateway(credentials=lambda: Credentials("AKIDbench", "bench-key"))
    def _view(self, job):
        self.real._client("ap-guangzhou")
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
        state = "RUNNING" if job in self.retried else "FAILED"
        return JobView.model_validate({"JobId": job, "JobState": state, "EndTime": end})
    def describe_jobs(self, region, ids): return {j: self._view(j) for j in ids}
    def list_jobs(self, region, state, offset, limit=100): return [], 0
    def describe_job(self, region, job_id): raise AssertionError("not needed")
    def retry_jobs(self, region, ids): self.retried += ids; return "bench"

batch = Batch()
from handler.config import Config
rt = app.build_runtime(Config.from_env(), gateway=batch)
"""

LEAN = r"""
import time
t0 = time.perf_counter()
import handler.app
t1 = time.perf_counter()
""" + STUB + r"""
import io, json, sys, contextlib
event = json.load(open(sys.argv[1]))
class Ctx:
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self): return 15000
with contextlib.redirect_stdout(io.StringIO()):
    if sys.argv[2] == "lambda":
        answer = app.handle(event, Ctx(), platform="aws", runtime=rt)
    else:
        answer = app.handle(event, {"request_id": "bench", "time_limit_in_ms": 15000}, platform="scf",
                            runtime=rt)
t2 = time.perf_counter()
assert answer["statusCode"] == 200 and batch.retried, answer
print(json.dumps({"import_ms": (t1 - t0) * 1000, "answer_ms": (t2 - t1) * 1000}))
"""

# A bare interpreter's start, and one that only imports the entry module: their ratio is what
# importing the entry module costs (the target: at most 8x).
BARE = r"""
print('{"import_ms": 0, "answer_ms": 0}')
"""

IMPORT_ONLY = r"""
import time
t0 = time.perf_counter()
import handler.app
t1 = time.perf_counter()
print('{"import_ms": %f, "answer_ms": 0}' % ((t1 - t0) * 1000))
"""

NAIVE = r"""
import time
t0 = time.perf_counter()
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function)
from tencentcloud.batch.v20170312 import batch_client, models
from tencentcloud.common import credential
import handler.app
logger = Logger(service="batch-autoretry")
metrics = Metrics(namespace="BatchAutoretry", service="batch-autoretry")
persistence = DynamoDBPersistenceLayer(table_name="autoretry-idempotency")
config = IdempotencyConfig(event_key_jmespath="body")
t1 = time.perf_counter()
""" + STUB + r"""
import io, json, sys, contextlib
event = json.load(open(sys.argv[1]))
with contextlib.redirect_stdout(io.StringIO()):
    answer = app.handle(event, {"request_id": "bench", "time_limit_in_ms": 15000}, platform="scf",
                        runtime=rt)
t2 = time.perf_counter()
assert answer["statusCode"] == 200 and batch.retried, answer
print(json.dumps({"import_ms": (t1 - t0) * 1000, "answer_ms": (t2 - t1) * 1000}))
"""


def ensure_naive_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text() == "\n".join(NAIVE_REQUIREMENTS):
        return python
    print(f"building the naive stack's venv in {venv} (once) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *NAIVE_REQUIREMENTS], check=True)
    marker.write_text("\n".join(NAIVE_REQUIREMENTS))
    return python


def one_run(python: str, code: str, entry: str, workdir: Path) -> dict[str, float]:
    db = workdir / f"ledger-{time.monotonic_ns()}.db"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHONPATH": str(ROOT), "AUTORETRY_STORE": f"sqlite:///{db}", "AUTORETRY_LOCAL": "true",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench"}
    started = time.perf_counter()
    done = subprocess.run([python, "-c", code, str(NOTICE), entry], cwd=workdir, env=env,
                          capture_output=True, text=True, check=False)
    wall_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"run failed ({python}):\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_ms"] = wall_ms
    return result


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank


def zip_size(archive: Path) -> str:
    if not archive.exists():
        return "not built"
    files = len(zipfile.ZipFile(archive).namelist())
    return f"{archive.stat().st_size / 1e6:.2f} MB zipped, {files} files ({archive.relative_to(ROOT)})"


def scf_zip() -> str:
    archive = ROOT / "build" / "scf" / "batch-autoretry-scf.zip"
    if not archive.exists():
        subprocess.run([sys.executable, str(ROOT / "deploy" / "scf" / "build.py")], check=True,
                       stdout=subprocess.DEVNULL)
    return zip_size(archive)


def naive_bundle_size(venv: Path) -> str:
    """The naive stack's site-packages as a deployment zip would hold them (no pip/setuptools)."""
    cached = venv / ".bundle-size"
    if cached.exists():
        return cached.read_text()
    site = next((venv / "lib").glob("python3*/site-packages"))
    skip = ("pip", "setuptools", "_distutils_hack", "pkg_resources")
    raw = 0
    with tempfile.TemporaryFile() as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in site.rglob("*"):
            rel = path.relative_to(site)
            if not path.is_file() or rel.parts[0].startswith(skip) or "__pycache__" in rel.parts:
                continue
            raw += path.stat().st_size
            z.write(path, rel.as_posix())
        z.close()
        zipped = tmp.tell()
    text = f"{zipped / 1e6:.1f} MB zipped, {raw / 1e6:.0f} MB unzipped (naive site-packages)"
    cached.write_text(text)
    return text


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="fresh interpreters per stack")
    ap.add_argument("--naive-venv", type=Path, default=NAIVE_VENV)
    ap.add_argument("--skip-naive-size", action="store_true", help="do not zip the naive stack")
    ap.add_argument("--no-naive", action="store_true",
                    help="leave out the naive stack (no venv to build) and the package sizes")
    args = ap.parse_args(argv)

    stacks = {
        "bare interpreter (python -c ...)": (sys.executable, BARE, "scf"),
        "import handler.app only": (sys.executable, IMPORT_ONLY, "scf"),
        "lean, SCF main_handler": (sys.executable, LEAN, "scf"),
        "lean, Lambda lambda_handler (+EMF)": (sys.executable, LEAN, "lambda"),
    }
    if not args.no_naive:
        naive_python = str(ensure_naive_venv(args.naive_venv))
        stacks["naive (full SDK, Powertools idempotency + boto3)"] = (naive_python, NAIVE, "scf")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in stacks}
    with tempfile.TemporaryDirectory(prefix="autoretry-coldstart-") as tmp:
        for python, code, entry in stacks.values():  # warm the OS file cache and .pyc files
            one_run(python, code, entry, Path(tmp))
        for _ in range(args.n):  # interleaved, so drift on a noisy machine hits every stack alike
            for name, (python, code, entry) in stacks.items():
                results[name].append(one_run(python, code, entry, Path(tmp)))

    print(f"cold start: a fresh interpreter imports the entry module and answers one failure notice "
          f"(N={args.n} each, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    print(f"{'stack':50} {'median':>8} {'p90':>8} {'import':>8} {'answer':>8}   (ms; import and "
          "answer are medians inside the process)")
    medians: dict[str, float] = {}
    for name, runs in results.items():
        wall = [r["wall_ms"] for r in runs]
        medians[name] = statistics.median(wall)
        print(f"{name:50} {medians[name]:8.0f} {p90(wall):8.0f} "
              f"{statistics.median(r['import_ms'] for r in runs):8.0f} "
              f"{statistics.median(r['answer_ms'] for r in runs):8.0f}")
    bare, lean = medians["bare interpreter (python -c ...)"], medians["lean, SCF main_handler"]
    print(f"import ratio: importing the entry module / a bare interpreter (median wall): "
          f"{medians['import handler.app only'] / bare:.2f}x (target <= 8x)")
    print(f"cold start ratio: import + first answer / a bare interpreter (median wall): "
          f"{lean / bare:.2f}x")
    if args.no_naive:
        return 0
    naive = medians["naive (full SDK, Powertools idempotency + boto3)"]
    print(f"ratio naive / lean (median wall): {naive / lean:.2f}x "
          f"({naive - lean:.0f} ms more per cold start)")
    print()
    print("deployment packages:")
    print(f"  SCF zip    {scf_zip()}")
    print(f"  Lambda zip {zip_size(ROOT / '.serverless' / 'batch-autoretry.zip')}"
          + ("" if (ROOT / ".serverless" / "batch-autoretry.zip").exists() else "  (run: make package)"))
    if not args.skip_naive_size:
        print(f"  naive      {naive_bundle_size(args.naive_venv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
