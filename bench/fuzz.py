"""Fuzz both entry points with generated deliveries of every shape (not run in CI).

    .venv/bin/python bench/fuzz.py                 # 100,000 deliveries, seed 14
    .venv/bin/python bench/fuzz.py -n 20000 --seed 7

Each delivery is one platform event (SCF API Gateway, AWS HTTP API v2, REST v1, Function URL,
legacy CMQ records, a notice invoked directly, a timer) handed to `handler.app.handle` for SCF or
Lambda, with a runtime on a fresh SQLite ledger and an in-memory Batch API that records every call.
Three kinds of delivery, drawn with a seeded generator:

- valid: an authenticated, well-formed notice (one of the undocumented variants the function must
  accept) naming a FAILED job of the `legit` pool: may be retried, once per failure;
- refused: a well-formed notice for a FAILED job of the `victim` pool that must never be retried:
  unauthenticated or forged credentials (wrong token, wrong secret, lone surrogates, token in the
  path), a region outside AUTORETRY_REGION, a job id not in the API's format, too many events;
- hostile: a valid notice mutated at random (any node replaced by any JSON value), junk, non-UTF-8,
  deep nesting, bad base64, numbers of thousands of digits, wrong trigger shapes, over-sized bodies;
  it names only jobs that are not FAILED or do not exist.

It prints the answers by status, and the counts that must all be 0: 5xx answers, exceptions out of
`handle`, RetryJobs naming a job from a refused or hostile delivery, and retries of a legit failure
beyond the first. Exit status 1 if any is not 0.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "fuzz-token-0c5e9a2b71"
SECRET = "fuzz-hmac-secret-4d8f16"
REGION = "ap-guangzhou"
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


class RecordingBatch:
    """The Batch API in memory: jobs in the given states until retried; every call recorded."""

    timeout_s = 1.0

    def __init__(self, failed: list[str], other: dict[str, str]) -> None:
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
        self.jobs = {j: {"JobId": j, "JobState": "FAILED", "EndTime": end} for j in failed}
        self.jobs.update({j: {"JobId": j, "JobState": s, "EndTime": end} for j, s in other.items()})
        self.retried: list[list[str]] = []
        self.calls: collections.Counter[str] = collections.Counter()

    def describe_jobs(self, region: str, job_ids: list[str]) -> dict[str, Any]:
        from handler.jobs import JobView

        self.calls["DescribeJobs"] += 1
        return {j: JobView.model_validate(self.jobs[j]) for j in job_ids if j in self.jobs}

    def list_jobs(self, region: str, state: str, offset: int, limit: int = 100
                  ) -> tuple[list[Any], int]:
        self.calls["DescribeJobs(list)"] += 1
        return [], 0  # the sweep finds nothing: every retry here comes from a delivery

    def describe_job(self, region: str, job_id: str) -> Any:
        from handler.jobs import JobDetail

        self.calls["DescribeJob"] += 1
        return JobDetail.model_validate({"JobId": job_id, "StateReason": "fuzz"})

    def retry_jobs(self, region: str, job_ids: list[str]) -> str:
        self.calls["RetryJobs"] += 1
        self.retried.append(list(job_ids))
        for j in job_ids:
            if j in self.jobs:
                self.jobs[j]["JobState"] = "RUNNING"
        return "fuzz"


def job_id(rng: random.Random) -> str:
    return "job-" + "".join(rng.choice(ALNUM) for _ in range(8))


# --- notices ------------------------------------------------------------------------------------

def variant(rng: random.Random, job: str, region: str = REGION) -> dict[str, Any]:
    """A well-formed failure notice for `job`, in one of the shapes the function must accept."""
    name = rng.choice(["JOB_FAILED", "JOB_FAILED_INTERRUPTED", "TASK_FAILED", "TASK_INSTANCE_FAILED"])
    ev: dict[str, Any] = {"EventVersion": rng.choice(["1.0", 1, "2.1", None]),
                          "EventTime": rng.choice(["2026-11-24T10:00:00Z", 1795946400, 1795946400.25]),
                          "Region": region, "EventName": name}
    where = rng.randrange(4)
    if where == 0:
        ev["Batch"] = {"JobId": job, "JobName": "render", "JobState": "FAILED"}
    elif where == 1:
        ev["JobId"], ev["Batch"] = job, {"TaskName": "t"}
    elif where == 2:
        ev["Batch"] = {"TaskInstance": {"JobId": job, "TaskInstanceIndex": 2}, "TaskName": "t"}
    else:
        ev["Batch"] = {"Task": {"JobId": job}}
    ev["EventVars"] = rng.choice([
        [], None, [{"Name": "pipeline", "Value": "n"}], [{"Key": "k", "Value": 3}],
        [{"name": "a", "value": True}], {"pipeline": "nightly", "n": 2}])
    if rng.random() < 0.3:
        ev["Unknown"] = {"nested": [1, {"x": None}]}
    return {"Events": ev if rng.random() < 0.05 else [ev]}


def wrap(rng: random.Random, notice_text: str) -> str:
    """SIMPLIFIED raw notice, JSON envelope, envelope with base64 msgBody, or base64 of either."""
    how = rng.randrange(4)
    if how == 0:
        return notice_text
    raw = notice_text.encode("utf-8", "surrogatepass")
    body = base64.b64encode(raw).decode() if how == 2 else notice_text
    env = json.dumps({"TopicOwner": 1250000000, "topicName": "batch-events", "subscriptionName": "s",
                      "msgId": str(rng.randrange(10**10)), "msgBody": body, "publishTime": 1})
    return base64.b64encode(env.encode("utf-8", "surrogatepass")).decode() if how == 3 else env


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    leaves: list[Any] = [None, True, 0, -1, 1e308, "", "x" * rng.randrange(300), "\ud800", [], {},
                         "job-ABCDEFGH", "eu-frankfurt", {"Events": []}, [[[]]]]
    if depth > 5 or rng.random() < 0.25:
        return rng.choice(leaves)
    if isinstance(value, dict) and value:
        out = dict(value)
        key = rng.choice(sorted(out))
        out[key] = mutate(rng, out[key], depth + 1)
        if rng.random() < 0.2:
            key = rng.choice(["", "JobId", "Batch", "EventVars", "Events", "msgBody", "__x"])
            out[key] = rng.choice(leaves)
        return out
    if isinstance(value, list) and value:
        out_l = list(value)
        i = rng.randrange(len(out_l))
        out_l[i] = mutate(rng, out_l[i], depth + 1)
        return out_l
    return rng.choice(leaves)


# --- platform events ------------------------------------------------------------------------------

def http_event(rng: random.Random, body: str | bytes, headers: dict[str, str],
               query: dict[str, str], path: str = "/events", method: str = "POST") -> dict[str, Any]:
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    b64 = rng.random() < 0.15
    if b64:
        text = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
    shape = rng.randrange(4)
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    if shape == 0:  # SCF API Gateway
        return {"httpMethod": method, "path": path, "headers": headers, "queryString": query,
                "headerParameters": {}, "requestContext": {"requestId": "r"}, "body": text,
                "isBase64Encoded": b64}
    if shape == 1:  # AWS REST v1
        return {"resource": "/events", "httpMethod": method, "path": path, "headers": headers,
                "queryStringParameters": query or None, "requestContext": {"requestId": "r"},
                "body": text, "isBase64Encoded": b64}
    # AWS HTTP API v2 and Function URL (the same shape)
    return {"version": "2.0", "rawPath": path, "rawQueryString": qs,
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {"http": {"method": method, "path": path}, "requestId": "r"},
            "body": text, "isBase64Encoded": b64}


def credentials(rng: random.Random, body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    from handler import auth

    how = rng.randrange(3)
    if how == 0:
        return {"Authorization": f"Bearer {TOKEN}"}, {}
    if how == 1:
        return {}, {"token": TOKEN}
    return auth.signed_headers(SECRET, body), {}


def bad_credentials(rng: random.Random, body: bytes) -> tuple[dict[str, str], dict[str, str], str]:
    from handler import auth

    path = "/events"
    how = rng.randrange(9)
    if how == 0:
        return {}, {}, path
    if how == 1:
        return {"Authorization": f"Bearer {TOKEN}x"}, {}, path
    if how == 2:
        return {}, {"token": TOKEN[:-1]}, path
    if how == 3:
        return auth.signed_headers(SECRET + "z", body), {}, path
    if how == 4:
        return {"Authorization": "Bearer \ud800"}, {"token": "\udcff"}, path
    if how == 5:
        return {"X-Autoretry-Timestamp": "1", "X-Autoretry-Signature": "sha256=" + "0" * 64}, {}, path
    if how == 6:
        return {}, {}, f"/events;token={TOKEN}"
    if how == 7:
        return {"Authorization": "Bearer    "}, {"token": "   "}, path
    headers = auth.signed_headers(SECRET, body + b" ")  # signed over another body
    return headers, {}, path


def hostile_body(rng: random.Random, bystanders: list[str]) -> bytes:
    how = rng.randrange(10)
    if how == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if how == 1:
        return ("[" * rng.randrange(30, 3000)).encode()
    if how == 2:
        return b"not base64 !!" * rng.randrange(1, 10)
    if how == 3:
        return b"\xff\xfe{" + os.urandom(8)
    if how == 4 and rng.random() < 0.05:
        return b"x" * (1024 * 1024 + 1)
    if how == 4:  # a number past Python's 4,300-digit int conversion limit
        return (b'{"Events": [{"EventName": "JOB_FAILED", "Batch": {"JobId": "%s"}, "EventTime": %s}]}'
                % (rng.choice(bystanders).encode(), b"9" * rng.randrange(4301, 6000)))
    notice = variant(rng, rng.choice(bystanders))
    text = json.dumps(mutate(rng, notice), ensure_ascii=rng.random() < 0.5)
    return wrap(rng, text).encode("utf-8", "surrogatepass")


def refused_notice(rng: random.Random, victim: str) -> tuple[dict[str, Any], bool]:
    """A notice for a victim refused by its content (True) — or a well-formed one (False) for the
    callers to refuse by its credentials."""
    how = rng.randrange(5)
    if how == 0:
        return variant(rng, victim, region=rng.choice(["eu-frankfurt", "ap-shanghai", "na-ashburn"])), True
    if how == 1:
        return variant(rng, victim.upper().replace("JOB-", "job-")), True
    if how == 2:
        events = variant(rng, victim)["Events"]
        events = events if isinstance(events, list) else [events]
        return {"Events": events * 101}, True
    if how == 3:
        return variant(rng, victim, region="Mars Base"), True
    return variant(rng, victim), False


# --- the run --------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100_000, help="deliveries")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    tmp = tempfile.mkdtemp(prefix="autoretry-fuzz-")
    os.environ.update({"AUTORETRY_STORE": f"sqlite:///{tmp}/ledger.db", "AUTORETRY_LOCAL": "false",
                       "AUTORETRY_AUTH_TOKEN": TOKEN, "AUTORETRY_HMAC_SECRET": SECRET,
                       "AUTORETRY_REGION": REGION, "AUTORETRY_API_SPEEDUP": "10000"})
    for name in ("AUTORETRY_POLICY", "AUTORETRY_DRY_RUN", "TENCENTCLOUD_RUNENV", "AWS_LAMBDA_FUNCTION_NAME"):
        os.environ.pop(name, None)

    from handler import app
    from handler.config import Config

    legit = [job_id(rng) for _ in range(max(10, args.n // 10))]
    victims = [job_id(rng) for _ in range(200)]
    bystanders = {job_id(rng): rng.choice(["RUNNING", "SUCCEED", "FAILED_INTERRUPTED_NOT_A_STATE"])
                  for _ in range(50)}
    unknown = [job_id(rng) for _ in range(50)]
    batch = RecordingBatch(legit + victims, bystanders)
    runtime = app.build_runtime(Config.from_env(), gateway=batch)  # type: ignore[arg-type]

    statuses: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    exceptions: collections.Counter[str] = collections.Counter()
    fivexx = 0
    legit_left = list(legit)
    rng.shuffle(legit_left)

    class Sink(io.StringIO):
        def write(self, s: str) -> int:
            return len(s)

    started = time.perf_counter()
    real_stdout = sys.stdout
    sys.stdout = Sink()  # the function's log lines: counted by nobody, written nowhere
    try:
        for i in range(args.n):
            roll = rng.random()
            platform = rng.choice(["scf", "aws"])
            if roll < 0.10 and legit_left:
                kind = "valid"
                text = json.dumps(variant(rng, legit_left.pop()))
                body = wrap(rng, text)
                if rng.random() < 0.85:
                    headers, query = credentials(rng, body.encode())
                    event = http_event(rng, body, {"Content-Type": "text/plain", **headers}, query)
                elif rng.random() < 0.5:
                    event = {"Records": [{"CMQ": {"msgId": str(i), "msgBody": body}}]}
                else:
                    event = json.loads(text)  # a notice invoked directly
            elif roll < 0.45:
                kind = "refused"
                notice, by_content = refused_notice(rng, rng.choice(victims))
                body = wrap(rng, json.dumps(notice))
                if by_content and rng.random() < 0.3:
                    event = {"Records": [{"CMQ": {"msgId": str(i), "msgBody": body}}]}
                elif by_content:
                    headers, query = credentials(rng, body.encode())
                    event = http_event(rng, body, {"Content-Type": "text/plain", **headers}, query)
                else:
                    headers, query, path = bad_credentials(rng, body.encode())
                    event = http_event(rng, body, {"Content-Type": "text/plain", **headers}, query, path)
            else:
                kind = "hostile"
                pool = list(bystanders) + unknown
                raw = hostile_body(rng, pool)
                shape = rng.randrange(10)
                if shape < 7:
                    headers, query = credentials(rng, raw)
                    event = http_event(rng, raw, {"Content-Type": "text/plain", **headers}, query,
                                       method=rng.choice(["POST"] * 8 + ["GET", "PUT"]))
                elif shape == 7:
                    event = {"Records": [{"CMQ": {"msgId": str(i),
                                                  "msgBody": raw.decode("utf-8", "replace")}}]}
                elif shape == 8:
                    event = mutate(rng, {"Events": [{"EventName": "JOB_FAILED",
                                                     "Batch": {"JobId": rng.choice(pool)}}]})
                else:
                    event = rng.choice([{"Type": "Timer"}, {"source": "aws.events"}, [], "x", None,
                                        {"Records": [{"CMQ": {"msgBody": 5}}]}, {"Records": []},
                                        {"httpMethod": "POST", "headers": None, "body": None}])
            kinds[kind] += 1
            context: Any = {"time_limit_in_ms": 15000}
            try:
                answer = app.handle(copy.deepcopy(event) if kind == "hostile" else event, context,
                                    platform=platform, runtime=runtime)
                status = int(answer["statusCode"])
                statuses[f"{kind} {status}"] += 1
                fivexx += status >= 500
            except app.RedeliverLater:
                statuses[f"{kind} redeliver"] += 1
                fivexx += 1
            except Exception as e:  # a crash: the counts below must show none
                exceptions[f"{type(e).__name__}: {str(e)[:40]}"] += 1
            if (i + 1) % 10_000 == 0:
                print(f"  {i + 1} deliveries, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        sys.stdout = real_stdout
        runtime.close()
    elapsed = time.perf_counter() - started

    retried = [j for call in batch.retried for j in call]
    legit_set = set(legit)
    wrongly = [j for j in retried if j not in legit_set]
    twice = sum(c - 1 for c in collections.Counter(j for j in retried if j in legit_set).values() if c > 1)
    valid_sent = kinds["valid"]
    print(f"fuzz: {args.n} deliveries (seed {args.seed}) through handler.app.handle for SCF and Lambda, "
          f"{elapsed:.0f} s ({args.n / elapsed:.0f}/s)")
    print(f"  by kind: {dict(kinds)}")
    print(f"  answers: {dict(sorted(statuses.items()))}")
    print(f"  Batch API calls: {dict(batch.calls)}")
    print(f"  legit failures retried: {len(set(retried) & legit_set)} of {valid_sent} sent")
    print(f"  5xx or redeliver: {fivexx}")
    print(f"  exceptions out of handle: {sum(exceptions.values())} {dict(exceptions) or ''}")
    print(f"  RetryJobs naming a job from refused or hostile input: {len(wrongly)}")
    print(f"  legit failures retried more than once: {twice}")
    bad = fivexx + sum(exceptions.values()) + len(wrongly) + twice
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
