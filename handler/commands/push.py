"""Send the function a job's failure notice the way a TDMQ-CMQ HTTP subscription pushes it: POST,
Content-Type text/plain, x-cmq-* headers, the JSON envelope with the notice in msgBody (or, with
--simplified, the notice itself). --dups N sends N more copies of the same message at once, as a
topic's redeliveries can arrive; the ledger must absorb them.

    python -m handler push job-3k9x2m1a --dups 2
    python -m handler push --list-failed        # the ids of the jobs the Batch API lists as FAILED

Credentials for the endpoint come from the environment the function reads: AUTORETRY_HMAC_SECRET
signs the request, AUTORETRY_AUTH_TOKEN is sent as ?token=; with neither, the request carries
none (`serve` runs in local mode, AUTORETRY_LOCAL=true, unless one of them is set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from handler.commands import EXIT_STATUS, Refused, acting_runtime, one_line

PROG = "python -m handler push"
# Where `python -m handler serve` listens by default (its --port 8080), on the path the deployed
# API Gateway route uses.
DEFAULT_URL = "http://127.0.0.1:8080/events"
EVENTS = ("JOB_FAILED", "JOB_FAILED_INTERRUPTED")
TIMEOUT_S = 20.0  # the topic redelivers after ~15 s without an answer; wait a little longer


def notice(job_id: str, region: str, event: str = "JOB_FAILED") -> dict[str, object]:
    """The notice Batch publishes for a job's failure (the `Notifications` of SubmitJob)."""
    state = "FAILED_INTERRUPTED" if event == "JOB_FAILED_INTERRUPTED" else "FAILED"
    return {"Events": [{"EventVersion": "1.0",
                        "EventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "Region": region, "EventName": event,
                        "Batch": {"JobId": job_id, "JobState": state}}]}


def envelope(body: str, message_id: str, topic: str = "batch-events",
             subscription: str = "autoretry-local") -> dict[str, object]:
    """The JSON push envelope of a TDMQ-CMQ HTTP subscription (format JSON, not SIMPLIFIED)."""
    return {"TopicOwner": 0, "topicName": topic, "subscriptionName": subscription,
            "msgId": message_id, "msgBody": body, "publishTime": int(time.time() * 1000)}


def push_headers(message_id: str, agent: str) -> dict[str, str]:
    """The headers a TDMQ-CMQ HTTP subscription sends with a push."""
    return {"Content-Type": "text/plain", "User-Agent": agent, "x-cmq-request-id": message_id,
            "x-cmq-message-id": message_id, "x-cmq-message-tag": ""}


def with_token(url: str, token: str) -> str:
    """`url` with `token` as its (only) ?token= parameter."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("token", token)])))


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str, float]:
    """POST and read the answer: status, text, milliseconds. An HTTP error status is an answer;
    no answer at all raises (URLError, OSError)."""
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    return status, text, (time.monotonic() - started) * 1000


def push(url: str, job_id: str, region: str, event: str, copies: int, simplified: bool,
         timeout: float = TIMEOUT_S) -> list[tuple[int, str, float]]:
    """Send `copies` identical pushes of one message at once; their answers, in sending order."""
    from handler.auth import signed_headers

    message_id = f"push-{uuid.uuid4().hex[:12]}"
    text = json.dumps(notice(job_id, region, event))
    body = (text if simplified else json.dumps(envelope(text, message_id))).encode()
    headers = push_headers(message_id, "batch-autoretry push")
    secret, token = os.environ.get("AUTORETRY_HMAC_SECRET"), os.environ.get("AUTORETRY_AUTH_TOKEN")
    if secret:
        headers.update(signed_headers(secret, body))
    elif token and "token=" not in urlsplit(url).query:
        url = with_token(url, token)
    answers: list[tuple[int, str, float] | BaseException | None] = [None] * copies
    start = threading.Barrier(copies)

    def send(i: int) -> None:
        start.wait()
        try:
            answers[i] = post(url, body, headers, timeout)
        except (urllib.error.URLError, OSError) as e:
            answers[i] = e

    threads = [threading.Thread(target=send, args=(i,)) for i in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done: list[tuple[int, str, float]] = []
    for a in answers:
        if not isinstance(a, tuple):
            reason = getattr(a, "reason", a)
            raise Refused(f"no answer from {urlsplit(url)._replace(query='').geturl()}: {reason}; "
                          "is `python -m handler serve` running there? (--url sets the address)")
        done.append(a)
    return done


def list_failed(region: str) -> list[str]:
    """Ids of the jobs the Batch API (AUTORETRY_BATCH_ENDPOINT) lists as FAILED, newest first.
    The listing takes a turn of the DescribeJobs limit from the function's ledger
    (AUTORETRY_STORE), as the function's own calls do: the limit is the account's, and a call
    made beside the turns would push the function's next one over it; so the ledger is held to
    AUTORETRY_LEDGER_ID first, as for a command that retries."""
    from handler.retrier import Deadline
    from handler.retrier.pacing import OutOfTime, Pacer

    rt = acting_runtime()
    pacer = Pacer(rt.ledger, rt.settings, rt.gateway.timeout_s)
    within = rt.settings.max_token_wait_s + 2 * rt.gateway.timeout_s
    try:
        with pacer.turn("DescribeJobs", Deadline.after(within)):
            views, _ = rt.gateway.list_jobs(region, "FAILED", 0)
    except OutOfTime:
        raise Refused("no turn of the shared DescribeJobs limit came in time (the function is "
                      "using it); try again in a moment") from None
    return [v.JobId for v in views]


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="the failed job(s) to announce")
    ap.add_argument("--dups", type=int, default=0, metavar="N",
                    help="send N more copies of each push at the same time (default 0)")
    ap.add_argument("--url", default=DEFAULT_URL, help=f"the function's endpoint (default {DEFAULT_URL})")
    ap.add_argument("--region", help="the jobs' region (default: the first of AUTORETRY_REGION)")
    ap.add_argument("--event", choices=EVENTS, default="JOB_FAILED")
    ap.add_argument("--simplified", action="store_true",
                    help="send the notice itself, as a subscription in SIMPLIFIED format does")
    ap.add_argument("--list-failed", action="store_true",
                    help="print the ids of the jobs the Batch API lists as FAILED and send nothing")
    args = ap.parse_args(argv)
    if args.dups < 0:
        ap.error("--dups cannot be negative")
    if urlsplit(args.url).scheme not in ("http", "https"):
        ap.error(f"--url must be an http(s) URL, not {args.url!r}")
    if args.region is None:
        from handler.config import Config

        args.region = Config.from_env().default_region
    if args.list_failed:
        for job_id in list_failed(args.region):
            print(job_id)
        return 0
    if not args.job_ids:
        ap.error("name at least one JOB_ID (or --list-failed)")
    refused = 0
    for job_id in args.job_ids:
        answers = push(args.url, job_id, args.region, args.event, 1 + args.dups, args.simplified)
        for n, (status, text, ms) in enumerate(answers, 1):
            print(f"{job_id} copy {n}/{len(answers)}: HTTP {status} in {ms:.0f} ms {text[:300]}")
            refused += not 200 <= status < 300
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
