"""What Batch notices travel through, as `python -m handler wire` makes it (its `ensure`, reused):
the topic, the queue the function pulls with its dead-letter queue, and the queue's subscription,
named after the queue. Taken down in the reverse order, the topic with any other subscription on
it (said so): `teardown --keep-wiring` keeps it all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from handler.commands import Refused
from handler.commands.wire import Plan, WireError, ensure
from handler.deploy.cloud import CallFailed, Cloud, Say

MAX_RECEIVES = 5  # wire's default: receives before a message that is never deleted is set aside
_EXISTS = re.compile(r"^(topic|queue|subscription) (\S+): exists( \(.*\))?$")
_CREATED = {"CreateCmqTopic": ("topic", "TopicName"), "CreateCmqQueue": ("queue", "QueueName"),
            "CreateCmqSubscribe": ("subscription", "SubscriptionName")}


def dead_letter_queue(queue: str) -> str:
    return f"{queue}-dead-letters"  # wire's default


@dataclass
class _Plan(Plan):
    """wire's plan, its lines in deploy's words: 'exists' is 'up to date'; a creation is said by
    the caller once it succeeded (wire says it before the call)."""

    report: Say = print

    def say(self, line: str) -> None:
        self.lines.append(line)
        if line.startswith(("calling ", "would call ")):
            return
        found = _EXISTS.match(line)
        self.report(f"{found[1]} {found[2]}: up to date{found[3] or ''}" if found else line)


def ensure_wiring(cloud: Cloud, topic: str, queue: str) -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    last: list[str] = []

    def call(action: str, params: dict[str, Any]) -> dict[str, Any]:
        last[:] = [action]
        try:
            answer = cloud.tdmq(action, params)
        except CallFailed as e:  # wire's ensure tells 'absent' by the SDK's exception
            raise TencentCloudSDKException(e.code, e.message) from None
        if action in _CREATED:
            kind, key = _CREATED[action]
            where = f" (queue → {params['Endpoint']})" if kind == "subscription" else ""
            cloud.say(f"{kind} {params[key]}: {'would be created' if cloud.dry_run else 'created'}"
                      f"{where}")
        return answer

    plan = _Plan(topic, queue, dead_letter_queue(queue), queue, None, MAX_RECEIVES, report=cloud.say)
    try:
        ensure(plan, call, dry_run=False)  # reads are made under --dry-run too; cloud skips changes
    except WireError as e:
        raise Refused(str(e)) from None
    except TencentCloudSDKException as e:
        raise CallFailed("tdmq", last[0] if last else "?", str(e.get_code()),
                         str(e.get_message())) from None


def remove_wiring(cloud: Cloud, topic: str, queue: str) -> None:
    dry = cloud.dry_run
    gone = "would be deleted" if dry else "deleted"
    subs = cloud.find("tdmq", "DescribeCmqSubscriptionDetail", {
        "TopicName": topic, "SubscriptionName": queue, "Offset": 0, "Limit": 50}) or {}
    ours = any(s.get("SubscriptionName") == queue for s in subs.get("SubscriptionSet") or [])
    if ours:
        cloud.tdmq("DeleteCmqSubscribe", {"TopicName": topic, "SubscriptionName": queue})
    cloud.say(f"subscription {queue}: {gone if ours else 'already gone'}")
    for name in (queue, dead_letter_queue(queue)):  # the queue before the queue it dead-letters to
        found = cloud.find("tdmq", "DescribeCmqQueueDetail", {"QueueName": name})
        if found is None:
            cloud.say(f"queue {name}: already gone")
            continue
        detail = found.get("QueueDescribe") or {}
        held = int(detail.get("ActiveMsgNum") or 0) + int(detail.get("InactiveMsgNum") or 0)
        cloud.tdmq("DeleteCmqQueue", {"QueueName": name})
        cloud.say(f"queue {name}: {gone}{f' (with {held} messages in it)' if held else ''}")
    found = cloud.find("tdmq", "DescribeCmqTopicDetail", {"TopicName": topic})
    if found is None:
        cloud.say(f"topic {topic}: already gone")
        return
    others = int((found.get("TopicDescribe") or {}).get("SubscriptionCount") or 0)
    others -= 1 if ours and dry else 0  # a dry run did not delete ours
    cloud.tdmq("DeleteCmqTopic", {"TopicName": topic})
    also = f" (and {others} other subscription{'s' if others != 1 else ''} on it)" if others > 0 else ""
    cloud.say(f"topic {topic}: {gone}{also}")
