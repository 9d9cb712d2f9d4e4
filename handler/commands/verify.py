"""Check a deployed endpoint end to end: send it a failure notice for a job that does not exist, the
way the TDMQ-CMQ subscription would, and say what the answer means.

    python -m handler verify 'https://service-xxx.apigw.tencentcs.com/release/events?token=T'
    python -m handler verify https://abc.execute-api.us-east-1.amazonaws.com/events --hmac-secret S

The token may be in the URL (as the subscription sends it), given with --token (added to the URL),
or read from AUTORETRY_AUTH_TOKEN; the HMAC secret from --hmac-secret or AUTORETRY_HMAC_SECRET. A
200 means the request was authenticated and the notice is durably in the ledger; the job does not
exist, so the function records "not found" and retries nothing. Exit status 0 on a 2xx answer.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from handler.auth import signed_headers
from handler.commands import EXIT_STATUS, UsageError, one_line, time_budget
from handler.commands.push import TIMEOUT_S, envelope, post, push_headers, with_token

MEANING = {
    200: "OK: authenticated, and the notice is durably in the ledger (the job does not exist, so "
         "nothing is retried)",
    400: "the endpoint could not read the notice: is something between the topic and the function "
         "rewriting the body?",
    401: "refused: the token or HMAC secret does not match the function's AUTORETRY_AUTH_TOKEN / "
         "AUTORETRY_HMAC_SECRET",
    404: "no such route: check the path (POST /events) and the API Gateway stage",
    405: "the route does not accept POST",
    413: "the body was refused as too large",
    500: "the function is misconfigured: see its log for the variable to fix",
    502: "the gateway could not read the function's answer: enable the integrated response (SCF) "
         "or the proxy integration (AWS)",
    503: "the function refuses for now: either no AUTORETRY_AUTH_TOKEN / AUTORETRY_HMAC_SECRET is "
         "set, or its ledger is unreachable (the body says which)",
}


def _notice(job_id: str) -> str:
    event = {"EventVersion": "1.0", "EventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "EventName": "JOB_FAILED", "Batch": {"JobId": job_id, "JobName": "autoretry-verify"},
             "EventVars": [{"Name": "autoretry-verify", "Value": "true"}]}
    return json.dumps({"Events": [event]})


def _shown(url: str) -> str:
    """The URL with any token masked, for printing."""
    parts = urlsplit(url)
    query = [(k, "***" if k == "token" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


@one_line("python -m handler verify")
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler verify", description=__doc__,
                                 epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="the endpoint the topic subscription pushes to")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--token", help="shared token, sent as ?token= (default: $AUTORETRY_AUTH_TOKEN)")
    group.add_argument("--hmac-secret", help="sign the request (default: $AUTORETRY_HMAC_SECRET)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S)
    args = ap.parse_args(argv)

    url = args.url
    if urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"not an http(s) URL: {_shown(url)}")
    time_budget(args.timeout, "--timeout")
    message_id = f"verify-{uuid.uuid4().hex[:12]}"
    # Reads as synthetic, yet in the Batch API's exact id format (job- and 8 lowercase letters or
    # digits), which the function requires of every job it accepts.
    job_id = f"job-vrfy{uuid.uuid4().hex[:4]}"
    body = json.dumps(envelope(_notice(job_id), message_id, topic="autoretry-verify",
                               subscription="autoretry-verify")).encode()
    headers = push_headers(message_id, "batch-autoretry verify")
    secret = args.hmac_secret or (None if args.token else os.environ.get("AUTORETRY_HMAC_SECRET"))
    token = args.token or (None if args.hmac_secret else os.environ.get("AUTORETRY_AUTH_TOKEN"))
    if secret:
        headers.update(signed_headers(secret, body))
        how = "HMAC-signed"
    elif token and "token=" not in urlsplit(url).query:
        url = with_token(url, token)
        how = "token in the query string"
    else:
        how = "token in the URL" if "token=" in urlsplit(url).query else "no credential"
    print(f"POST {_shown(url)}  ({how}; notice for {job_id}, message {message_id})")

    started = time.monotonic()
    try:
        status, text, elapsed_ms = post(url, body, headers, args.timeout)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"no answer after {time.monotonic() - started:.1f} s: {reason}")
        print("the topic would redeliver; check the URL, DNS, and that the endpoint is public")
        return 1
    print(f"HTTP {status} in {elapsed_ms:.0f} ms: {text[:500]}")
    meaning = MEANING.get(status, "unexpected answer")
    if status == 200:
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            answer = None
        if isinstance(answer, dict) and "statusCode" in answer and "body" in answer:
            meaning = ("the gateway passed the function's answer through as a 200 body: turn on the "
                       "integrated response (SCF isIntegratedResponse), or every refusal looks like "
                       "success to the topic")
        elif not isinstance(answer, dict) or answer.get("accepted") != 1:
            meaning = "a 200, but not from this function (no 'accepted' count): check the URL"
    print(meaning)
    if 200 <= status < 300 and elapsed_ms > 15000:
        print("warning: slower than the ~15 s after which the topic redelivers")
    return 0 if 200 <= status < 300 and meaning == MEANING[200] else 1
