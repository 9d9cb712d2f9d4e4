"""TDMQ-CMQ queues and topics, for the queue pull and `wire`.

Two faces, as the real service has them:
- the data-flow API (`POST /v2/index.php`, form parameters, HmacSHA256/HmacSHA1 signature over
  `POST + host + path + ? + sorted params`, JSON `{"code", "message", "requestId", ...}`):
  SendMessage, BatchReceiveMessage (≤ 16), DeleteMessage, BatchDeleteMessage, PublishMessage;
- the management actions of API 3.0 `tdmq` 2020-02-17 (TC3-signed, routed here by server.py):
  Create/Describe/Delete for CmqQueue, CmqTopic and CmqSubscribe.
A received message hides for the queue's visibility timeout and gets a new receipt handle each
time; only the latest handle deletes it. With a dead-letter policy (`MaxReceiveCount`), a message
received that many times and not deleted moves to the dead-letter queue instead of showing again.
A topic delivers to its queue subscriptions (and, through `Topics`, to its HTTP ones).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from emulator.api import ApiError, answer_by_method
from emulator.behaviour import Behaviour
from emulator.topics import Subscription, Topics

VERSION = "2020-02-17"
PATH = "/v2/index.php"
MAX_BATCH = 16
NO_MESSAGE = 7000
MAX_SKEW_S = 300
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class DataFlowError(Exception):
    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


@dataclass
class Message:
    msg_id: str
    body: str
    enqueued: float
    visible_at: float
    receive_count: int = 0
    receipt_handle: str | None = None
    first_received: float = 0.0


@dataclass
class Queue:
    name: str
    visibility_timeout_s: float = 30.0
    retention_s: float = 345600.0
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None
    created: float = field(default_factory=time.time)
    messages: dict[str, Message] = field(default_factory=dict)
    dead_lettered: list[str] = field(default_factory=list)  # ids moved to the dead-letter queue
    deleted: list[str] = field(default_factory=list)  # ids deleted by a consumer


@dataclass
class QueueSubscription:
    topic: str
    name: str
    protocol: str  # "queue" | "http"
    endpoint: str
    notify_format: str
    notify_strategy: str
    created: float = field(default_factory=time.time)
    duplicates: int = 0  # extra copies of every message (a topic delivers at least once)


class Cmq:
    def __init__(self, secrets: Mapping[str, str], topics: Topics, *, speedup: float = 1.0,
                 clock: Callable[[], float] = time.time, behaviour: Behaviour | None = None) -> None:
        self.secrets, self.topics, self.speedup, self.clock = secrets, topics, speedup, clock
        self.behaviour = behaviour or Behaviour()
        self.queues: dict[str, Queue] = {}
        self.topic_names: dict[str, float] = {}
        self.subscriptions: dict[tuple[str, str], QueueSubscription] = {}
        self.dataflow_calls: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        topics.sinks.append(self.deliver)

    # --- what tests set up and look at ------------------------------------------------------------
    def create_queue(self, name: str, *, visibility_timeout_s: float = 30.0,
                     dead_letter_queue: str | None = None, max_receive_count: int | None = None) -> Queue:
        with self._lock:
            q = self.queues[name] = Queue(name, visibility_timeout_s, dead_letter_queue=dead_letter_queue,
                                          max_receive_count=max_receive_count)
            return q

    def subscribe_queue(self, topic: str, queue: str, name: str | None = None, *,
                        duplicates: int = 0) -> None:
        """The topic delivers every message to `queue`, with `duplicates` extra copies."""
        with self._lock:
            self.topic_names.setdefault(topic, time.time())
            sub = QueueSubscription(topic, name or f"{queue}-sub", "queue", queue, "SIMPLIFIED",
                                    "EXPONENTIAL_DECAY_RETRY", duplicates=duplicates)
            self.subscriptions[(topic, sub.name)] = sub

    def send(self, queue: str, body: str) -> str:
        with self._lock:
            return self._send(self._queue(queue), body)

    def depth(self, queue: str) -> int:
        """Messages in the queue, hidden ones included."""
        with self._lock:
            return len(self._queue(queue).messages)

    def deliver(self, topic: str, msg_id: str, message: str) -> None:
        """Topic → queue subscriptions: each gets its own copy (a SIMPLIFIED body), and its
        duplicates."""
        with self._lock:
            for sub in self.subscriptions.values():
                if sub.topic == topic and sub.protocol == "queue" and sub.endpoint in self.queues:
                    for _ in range(1 + sub.duplicates):
                        self._send(self.queues[sub.endpoint], message)

    # --- the data-flow API ------------------------------------------------------------------------
    def dataflow(self, method: str, host: str, path: str, body: bytes) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        call: dict[str, Any] = {"t": time.time(), "action": action, "code": 0,
                                "queue": params.get("queueName")}
        try:
            self._verify(method, host, path, params)
            answer = self._dataflow(action, params)
            answer.setdefault("code", 0)
            answer.setdefault("message", "")
        except DataFlowError as e:
            answer = {"code": e.code, "message": e.message, **e.extra}
        call["code"] = answer["code"]
        call["count"] = len(answer.get("msgInfoList") or [])
        with self._lock:
            self.dataflow_calls.append(call)
        answer["requestId"] = request_id
        return answer

    def _verify(self, method: str, host: str, path: str, params: dict[str, str]) -> None:
        sig = params.pop("Signature", "")
        secret_id = params.get("SecretId", "")
        if not sig or secret_id not in self.secrets:
            raise DataFlowError(4100, "(4100)authentication failed: SecretId not found or no Signature")
        try:
            ts = int(params.get("Timestamp", ""))
        except ValueError:
            raise DataFlowError(4000, "(4000)Timestamp is required") from None
        if abs(self.clock() - ts) > MAX_SKEW_S:
            raise DataFlowError(4100, "(4100)authentication failed: the request has expired")
        pairs = "&".join(f"{k.replace('_', '.')}={params[k]}" for k in sorted(params))
        digest = hashlib.sha256 if params.get("SignatureMethod") == "HmacSHA256" else hashlib.sha1
        expected = base64.b64encode(hmac.new(self.secrets[secret_id].encode(),
                                             f"{method.upper()}{host}{path}?{pairs}".encode(),
                                             digest).digest()).decode()
        if not hmac.compare_digest(expected, sig):
            raise DataFlowError(4100, "(4100)authentication failed: signature mismatch")

    def _dataflow(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            if action == "PublishMessage":
                topic = params.get("topicName", "")
                if topic not in self.topic_names:
                    raise DataFlowError(4440, f"(10100)topic {topic} is not existed")
                body = params.get("msgBody", "")
            else:
                queue = self._queue_or_error(params.get("queueName", ""))
        if action == "PublishMessage":
            return {"msgId": self.topics.publish(topic, body)}
        with self._lock:
            if action == "SendMessage":
                return {"msgId": self._send(queue, params.get("msgBody", ""))}
            if action in ("BatchReceiveMessage", "ReceiveMessage"):
                n = 1 if action == "ReceiveMessage" else _int(params.get("numOfMsg"), 0)
                if not 1 <= n <= MAX_BATCH:
                    raise DataFlowError(4000, f"(4000)numOfMsg must be 1 to {MAX_BATCH}")
                got = self._receive(queue, n)
                if not got:
                    raise DataFlowError(NO_MESSAGE, "(10200)no message")
                return got[0] if action == "ReceiveMessage" else {"msgInfoList": got}
            if action == "DeleteMessage":
                handle = params.get("receiptHandle", "")
                if not self._delete(queue, handle):
                    raise DataFlowError(4000, "(10700)invalid receiptHandle: the message was "
                                              "received again since, or is gone")
                return {}
            if action == "BatchDeleteMessage":
                handles = [v for k, v in sorted(params.items()) if k.startswith("receiptHandle.")]
                if not 1 <= len(handles) <= MAX_BATCH:
                    raise DataFlowError(4000, f"(4000)give 1 to {MAX_BATCH} receiptHandle.n")
                errors = [{"code": 4000, "message": "(10700)invalid receiptHandle", "receiptHandle": h}
                          for h in handles if not self._delete(queue, h)]
                if errors:
                    raise DataFlowError(6000, "(6000)some messages were not deleted", errorList=errors)
                return {}
        raise DataFlowError(4000, f"(4000)unknown Action {action!r}")

    def _queue_or_error(self, name: str) -> Queue:
        if name not in self.queues:
            raise DataFlowError(4440, f"(10100)queue {name} is not existed")
        return self.queues[name]

    def _queue(self, name: str) -> Queue:
        return self.queues[name]

    def _send(self, queue: Queue, body: str) -> str:
        now = time.time()
        msg = Message(f"msg-{next(self._ids):010d}", body, now, now)
        queue.messages[msg.msg_id] = msg
        return msg.msg_id

    def _receive(self, queue: Queue, n: int) -> list[dict[str, Any]]:
        now = time.time()
        out: list[dict[str, Any]] = []
        for msg in sorted(queue.messages.values(), key=lambda m: m.enqueued):
            if len(out) >= n:
                break
            if msg.visible_at > now:
                continue
            if queue.max_receive_count and msg.receive_count >= queue.max_receive_count:
                self._dead_letter(queue, msg)
                continue
            msg.receive_count += 1
            msg.first_received = msg.first_received or now
            msg.receipt_handle = uuid.uuid4().hex
            msg.visible_at = now + queue.visibility_timeout_s / self.speedup
            out.append({"msgId": msg.msg_id, "msgBody": msg.body, "receiptHandle": msg.receipt_handle,
                        "enqueueTime": int(msg.enqueued), "firstDequeueTime": int(msg.first_received),
                        "nextVisibleTime": int(msg.visible_at), "dequeueCount": msg.receive_count})
        return out

    def _dead_letter(self, queue: Queue, msg: Message) -> None:
        del queue.messages[msg.msg_id]
        queue.dead_lettered.append(msg.msg_id)
        dlq = self.queues.get(queue.dead_letter_queue or "")
        if dlq is not None:
            self._send(dlq, msg.body)

    def _delete(self, queue: Queue, handle: str) -> bool:
        for msg in queue.messages.values():
            if msg.receipt_handle == handle and handle:
                del queue.messages[msg.msg_id]
                queue.deleted.append(msg.msg_id)
                return True
        return False

    # --- the management API (tdmq 2020-02-17) -----------------------------------------------------
    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return answer_by_method(self, "tdmq", action, params, self._lock)

    def _api_CreateCmqQueue(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _name(p, "QueueName")
        if name in self.queues:
            raise ApiError("ResourceInUse.Queue", f"queue {name} already exists")
        dlq = p.get("DeadLetterQueueName")
        if dlq is not None and dlq not in self.queues:
            raise ApiError("ResourceNotFound", f"dead-letter queue {dlq} does not exist")
        max_receive = p.get("MaxReceiveCount")
        valid_count = isinstance(max_receive, int) and 1 <= max_receive <= 1000
        if dlq and p.get("Policy", 0) == 0 and not valid_count:
            raise ApiError("InvalidParameterValue", "MaxReceiveCount must be 1 to 1000 with Policy 0")
        visibility = p.get("VisibilityTimeout", 30)
        if not (isinstance(visibility, int) and 1 <= visibility <= 43200):
            raise ApiError("InvalidParameterValue", "VisibilityTimeout must be 1 to 43200")
        self.queues[name] = Queue(name, float(visibility), float(p.get("MsgRetentionSeconds", 3600)),
                                  dlq, max_receive if dlq else None)
        return {"QueueId": f"queue-{uuid.uuid4().hex[:8]}"}

    def _api_DescribeCmqQueueDetail(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _name(p, "QueueName")
        q = self.queues.get(name)
        if q is None:
            raise ApiError(self.behaviour.absent_queue_code, f"queue {name} does not exist")
        policy = ({"DeadLetterQueue": q.dead_letter_queue, "Policy": 0,
                   "MaxReceiveCount": q.max_receive_count} if q.dead_letter_queue else None)
        now = time.time()
        return {"QueueDescribe": {
            "QueueName": q.name, "VisibilityTimeout": int(q.visibility_timeout_s),
            "MsgRetentionSeconds": int(q.retention_s), "CreateTime": int(q.created * 1000),
            "ActiveMsgNum": sum(1 for m in q.messages.values() if m.visible_at <= now),
            "InactiveMsgNum": sum(1 for m in q.messages.values() if m.visible_at > now),
            "DeadLetterPolicy": policy}}

    def _api_DeleteCmqQueue(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _name(p, "QueueName")
        if self.queues.pop(name, None) is None:
            raise ApiError("ResourceNotFound", f"queue {name} does not exist")
        return {}

    def _api_CreateCmqTopic(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _name(p, "TopicName")
        if name in self.topic_names:
            raise ApiError("ResourceInUse.Topic", f"topic {name} already exists")
        self.topic_names[name] = time.time()
        return {"TopicId": f"topic-{uuid.uuid4().hex[:8]}"}

    def _api_DescribeCmqTopicDetail(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _name(p, "TopicName")
        if name not in self.topic_names:
            raise ApiError("ResourceNotFound.Topic", f"topic {name} does not exist")
        subs = sum(1 for s in self.subscriptions.values() if s.topic == name)
        return {"TopicDescribe": {"TopicName": name, "MsgRetentionSeconds": 86400,
                                  "CreateTime": int(self.topic_names[name] * 1000),
                                  "SubscriptionCount": subs}}

    def _api_DeleteCmqTopic(self, p: dict[str, Any]) -> dict[str, Any]:
        name = _name(p, "TopicName")
        if self.topic_names.pop(name, None) is None:
            raise ApiError("ResourceNotFound.Topic", f"topic {name} does not exist")
        for key in [k for k in self.subscriptions if k[0] == name]:
            del self.subscriptions[key]
        return {}

    def _api_CreateCmqSubscribe(self, p: dict[str, Any]) -> dict[str, Any]:
        topic, name = _name(p, "TopicName"), _name(p, "SubscriptionName")
        if topic not in self.topic_names:
            raise ApiError("ResourceNotFound.Topic", f"topic {topic} does not exist")
        if (topic, name) in self.subscriptions:
            raise ApiError("ResourceInUse.Subscription", f"subscription {name} already exists")
        protocol, endpoint = str(p.get("Protocol", "")), str(p.get("Endpoint", ""))
        fmt = str(p.get("NotifyContentFormat") or ("SIMPLIFIED" if protocol == "queue" else "JSON"))
        if protocol == "queue":
            if endpoint not in self.queues:
                raise ApiError("ResourceNotFound", f"queue {endpoint} does not exist")
            if fmt != "SIMPLIFIED":
                raise ApiError("InvalidParameterValue",
                               "a queue subscription takes NotifyContentFormat SIMPLIFIED")
        elif protocol == "http":
            if not endpoint.startswith("http://"):
                raise ApiError("InvalidParameterValue", "an http Endpoint must begin with http://")
            self.topics.subscribe(Subscription(topic, endpoint, "json" if fmt == "JSON" else "simplified"))
        else:
            raise ApiError("InvalidParameterValue", "Protocol is http or queue")
        self.subscriptions[(topic, name)] = QueueSubscription(
            topic, name, protocol, endpoint, fmt, str(p.get("NotifyStrategy") or "EXPONENTIAL_DECAY_RETRY"))
        return {"SubscriptionId": f"sub-{uuid.uuid4().hex[:8]}"}

    def _api_DescribeCmqSubscriptionDetail(self, p: dict[str, Any]) -> dict[str, Any]:
        topic = _name(p, "TopicName")
        if topic not in self.topic_names:
            raise ApiError("ResourceNotFound.Topic", f"topic {topic} does not exist")
        wanted = str(p.get("SubscriptionName") or "")
        subs = [s for s in self.subscriptions.values() if s.topic == topic and wanted in s.name]
        offset, limit = int(p.get("Offset") or 0), int(p.get("Limit") or 20)
        page = subs[offset:offset + min(limit, 50)]
        return {"TotalCount": len(subs), "SubscriptionSet": [
            {"SubscriptionName": s.name, "TopicName": s.topic, "Protocol": s.protocol,
             "Endpoint": s.endpoint, "NotifyContentFormat": s.notify_format,
             "NotifyStrategy": s.notify_strategy, "CreateTime": int(s.created * 1000)} for s in page]}

    def _api_DeleteCmqSubscribe(self, p: dict[str, Any]) -> dict[str, Any]:
        key = (_name(p, "TopicName"), _name(p, "SubscriptionName"))
        if self.subscriptions.pop(key, None) is None:
            raise ApiError("ResourceNotFound.Subscription", f"subscription {key[1]} does not exist")
        return {}


def _name(p: dict[str, Any], key: str) -> str:
    value = p.get(key)
    if not isinstance(value, str) or not _NAME.match(value):
        raise ApiError("InvalidParameterValue",
                       f"{key} must be a letter then up to 63 letters, digits, - or _")
    return value


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
