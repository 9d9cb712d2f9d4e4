"""Create (or check) what Batch notices travel through: the TDMQ-CMQ topic, and either a queue with
its dead-letter queue and queue subscription (the default: the function pulls it), or an HTTP
subscription (`--http URL`). Safe to run again: what exists is checked, not recreated. Prints the
`Notifications` block to add to SubmitJob. `--dry-run` prints the calls instead of making them.

The TDMQ API 3.0 (`tdmq`, 2020-02-17) through the SDK's CommonClient: no extra SDK package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handler.commands import EXIT_STATUS, Refused, UsageError, one_line
from handler.notices import REGION_PATTERN

PROG = "python -m handler wire"
TDMQ_VERSION = "2020-02-17"
EVENTS = ("JOB_FAILED", "JOB_FAILED_INTERRUPTED")
# CreateCmqQueue documents MsgRetentionSeconds as 30-43200 while the queue view says up to 15 days:
# 12 h is inside both. The topic keeps a message a day at most anyway.
QUEUE_RETENTION_S = 43200
VISIBILITY_TIMEOUT_S = 60  # longer than a batch takes to reach the ledger and be deleted


class WireError(Exception):
    """Something exists but differs from what was asked; nothing is changed, the user decides."""


Call = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class Plan:
    topic: str
    queue: str | None
    dead_letter_queue: str | None
    subscription: str
    http_url: str | None
    max_receives: int
    lines: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        line = without_token(line)
        self.lines.append(line)
        print(line, flush=True)


# The push URL's `?token=` is the function's secret: printed as *** wherever a line shows the URL.
_TOKEN = re.compile(r"([?&]token=)[^&\s\"']+")


def without_token(text: str) -> str:
    return _TOKEN.sub(r"\1***", text)


# TDMQ's SDKs list FailedOperation as well as ResourceNotFound for a queue's details, and no document
# says which a missing queue gets: either is taken as absent, and a create that then finds the queue
# there (ResourceInUse) reports it as existing.
ABSENT_TOO = {"DescribeCmqQueueDetail": ("FailedOperation",)}


def not_found(code: str, action: str = "") -> bool:
    return code.startswith("ResourceNotFound") or code in ABSENT_TOO.get(action, ())


def ensure(plan: Plan, call: Call, dry_run: bool) -> None:
    _topic(plan, call, dry_run)
    if plan.http_url is None:
        assert plan.queue is not None and plan.dead_letter_queue is not None
        _queue(plan, call, dry_run, plan.dead_letter_queue, None)
        _queue(plan, call, dry_run, plan.queue, plan.dead_letter_queue)
        _subscription(plan, call, dry_run, "queue", plan.queue, "SIMPLIFIED")
    else:
        _subscription(plan, call, dry_run, "http", plan.http_url, "JSON")


def _exists(call: Call, action: str, params: dict[str, Any]) -> dict[str, Any] | None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    try:
        return call(action, params)
    except TencentCloudSDKException as e:
        if not_found(str(e.get_code() or ""), action):
            return None
        raise


def _create(plan: Plan, call: Call, dry_run: bool, action: str, params: dict[str, Any]) -> None:
    plan.say(f"{'would call' if dry_run else 'calling'} {action} {json.dumps(params, sort_keys=True)}")
    if not dry_run:
        call(action, params)
    plan.created.append(action)


def _topic(plan: Plan, call: Call, dry_run: bool) -> None:
    params = {"TopicName": plan.topic}
    if dry_run:
        plan.say(f"would call DescribeCmqTopicDetail {json.dumps(params)}; if absent:")
    elif _exists(call, "DescribeCmqTopicDetail", params) is not None:
        plan.say(f"topic {plan.topic}: exists")
        return
    _create(plan, call, dry_run, "CreateCmqTopic", {"TopicName": plan.topic, "FilterType": 1,
                                                     "MsgRetentionSeconds": 86400})


def _queue(plan: Plan, call: Call, dry_run: bool, name: str, dead_letter: str | None) -> None:
    params = {"QueueName": name}
    if dry_run:
        plan.say(f"would call DescribeCmqQueueDetail {json.dumps(params)}; if absent:")
    else:
        found = _exists(call, "DescribeCmqQueueDetail", params)
        if found is not None:
            policy = (found.get("QueueDescribe") or {}).get("DeadLetterPolicy") or {}
            if dead_letter and policy.get("DeadLetterQueue") != dead_letter:
                plan.say(f"queue {name}: exists, but its dead-letter queue is "
                         f"{policy.get('DeadLetterQueue')!r}, not {dead_letter!r}: poison notices "
                         "will not be set aside; fix it in the console (ModifyCmqQueueAttribute)")
            else:
                plan.say(f"queue {name}: exists")
            return
    create: dict[str, Any] = {"QueueName": name, "MsgRetentionSeconds": QUEUE_RETENTION_S}
    if dead_letter:
        create.update({"VisibilityTimeout": VISIBILITY_TIMEOUT_S, "PollingWaitSeconds": 0,
                       "DeadLetterQueueName": dead_letter, "Policy": 0,
                       "MaxReceiveCount": plan.max_receives})
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    try:
        _create(plan, call, dry_run, "CreateCmqQueue", create)
    except TencentCloudSDKException as e:
        if not str(e.get_code() or "").startswith("ResourceInUse"):
            raise
        plan.say(f"queue {name}: exists (its details could not be read; check its dead-letter "
                 "queue in the console)")


def _subscription(plan: Plan, call: Call, dry_run: bool, protocol: str, endpoint: str,
                  content_format: str) -> None:
    params = {"TopicName": plan.topic, "SubscriptionName": plan.subscription, "Offset": 0, "Limit": 50}
    if dry_run:
        plan.say(f"would call DescribeCmqSubscriptionDetail {json.dumps(params)}; if absent:")
    else:
        found = _exists(call, "DescribeCmqSubscriptionDetail", params) or {}
        same = [s for s in found.get("SubscriptionSet") or []
                if s.get("SubscriptionName") == plan.subscription]
        if same:
            sub = same[0]
            if (str(sub.get("Protocol", "")).lower(), sub.get("Endpoint")) != (protocol, endpoint):
                raise WireError(f"subscription {plan.subscription} on {plan.topic} exists with "
                                f"{sub.get('Protocol')} {sub.get('Endpoint')!r}, not {protocol} "
                                f"{endpoint!r}: delete it (DeleteCmqSubscribe) or pick another "
                                "--subscription name")
            plan.say(f"subscription {plan.subscription}: exists ({protocol} → {endpoint})")
            return
    _create(plan, call, dry_run, "CreateCmqSubscribe", {
        "TopicName": plan.topic, "SubscriptionName": plan.subscription, "Protocol": protocol,
        "Endpoint": endpoint, "NotifyContentFormat": content_format,
        "NotifyStrategy": "EXPONENTIAL_DECAY_RETRY"})


def notifications_block(topic: str) -> dict[str, Any]:
    return {"NotificationTarget": "TDMQ_CMQ", "Notifications": [
        {"TopicName": topic, "EventConfigs": [{"EventName": name} for name in EVENTS]}]}


def show_notifications_block(topic: str, dry_run: bool) -> None:
    # Job events (JOB_FAILED…) apply to SubmitJob only (the SDK's EventConfig); a compute
    # environment's Notifications carry its own events, none of which the function acts on.
    print(("\nwould add" if dry_run else "\nAdd") + " this to the Job of every SubmitJob:")
    print(json.dumps(notifications_block(topic), indent=2))


def tdmq_caller(region: str, endpoint: str | None, protocol: str) -> Call:
    from tencentcloud.common.common_client import CommonClient
    from tencentcloud.common.credential import Credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    from handler.gateway import credentials_from_env

    creds = credentials_from_env()
    if creds is None:
        raise WireError("no Tencent Cloud credentials: set TENCENTCLOUD_SECRET_ID and "
                        "TENCENTCLOUD_SECRET_KEY (a key allowed the tdmq:*Cmq* actions)")
    http = HttpProfile(endpoint=endpoint or None, protocol=protocol, reqTimeout=15)
    client = CommonClient("tdmq", TDMQ_VERSION, Credential(creds.secret_id, creds.secret_key, creds.token),
                          region, ClientProfile(httpProfile=http, language="en-US"))

    def call(action: str, params: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = client.call_json(action, params)
        response: dict[str, Any] = answer.get("Response") or {}
        return response

    return call


@one_line(PROG)
def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, epilog=EXIT_STATUS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topic", default="batch-events")
    ap.add_argument("--queue",
                    help="the queue the function pulls (default $AUTORETRY_QUEUE or batch-autoretry)")
    ap.add_argument("--dead-letter-queue", help="default: QUEUE-dead-letters")
    ap.add_argument("--max-receives", type=int,
                    help="receives before a message that is never deleted goes to the dead-letter "
                         "queue (1 to 1000, default 5)")
    ap.add_argument("--subscription", default="batch-autoretry")
    ap.add_argument("--http", metavar="URL", help="subscribe this http:// endpoint instead of a queue")
    ap.add_argument("--region", default=(os.environ.get("AUTORETRY_REGION") or "ap-guangzhou").split(",")[0],
                    help="e.g. ap-guangzhou (default: the first of $AUTORETRY_REGION)")
    ap.add_argument("--endpoint", default=os.environ.get("AUTORETRY_TDMQ_ENDPOINT"),
                    help="host[:port] of the TDMQ API (default: Tencent's; $AUTORETRY_TDMQ_ENDPOINT)")
    ap.add_argument("--protocol", default=os.environ.get("AUTORETRY_TDMQ_PROTOCOL", "https"),
                    choices=("https", "http"))
    ap.add_argument("--allow-https", action="store_true",
                    help="send an https:// --http URL anyway (the API documents http:// only)")
    ap.add_argument("--dry-run", action="store_true", help="print the calls, make none")
    args = ap.parse_args(argv)
    _check(args)
    args.queue = args.queue or os.environ.get("AUTORETRY_QUEUE") or "batch-autoretry"
    args.max_receives = 5 if args.max_receives is None else args.max_receives
    plan = Plan(args.topic, None if args.http else args.queue,
                None if args.http else (args.dead_letter_queue or f"{args.queue}-dead-letters"),
                args.subscription, args.http, args.max_receives)
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    try:
        call: Call = (lambda a, p: {}) if args.dry_run else tdmq_caller(args.region, args.endpoint,
                                                                          args.protocol)
        ensure(plan, call, args.dry_run)
    except WireError as e:
        raise Refused(without_token(str(e))) from None
    except TencentCloudSDKException as e:
        raise Refused(f"{e.get_code()}: {e.get_message()}") from None
    show_notifications_block(args.topic, args.dry_run)
    if not args.http:
        print(f"\nThe function pulls it with AUTORETRY_QUEUE={args.queue} "
              f"(and AUTORETRY_REGION={args.region}).")
    return 0


def _check(args: argparse.Namespace) -> None:
    """Refuse what the command would otherwise ignore, or what the function would refuse later."""
    region = args.region.strip()
    if not re.match(REGION_PATTERN, region):  # the rule AUTORETRY_REGION is held to
        raise UsageError(f"--region {region!r}: expected a region such as ap-guangzhou (the "
                         "function would refuse it as AUTORETRY_REGION)")
    args.region = region
    if args.http is not None:
        ignored = [name for name, value in (("--queue", args.queue),
                                            ("--dead-letter-queue", args.dead_letter_queue),
                                            ("--max-receives", args.max_receives))
                   if value is not None]
        if ignored:
            raise UsageError(f"{' and '.join(ignored)} with --http: an HTTP subscription has no "
                             f"queue; drop {' and '.join(ignored)}, or --http to wire a queue")
        if not args.http.startswith("http://") and not (
                args.allow_https and args.http.startswith("https://")):
            raise UsageError("TDMQ-CMQ documents HTTP subscription endpoints as http://… "
                             "(CreateCmqSubscribe); for an https-only endpoint use the queue pull "
                             "(no --http), put an HTTP listener (CLB, ALB) in front, or try "
                             "--allow-https")
    if args.max_receives is not None and not 1 <= args.max_receives <= 1000:
        raise UsageError(f"--max-receives {args.max_receives}: expected 1 to 1000")
