"""A TDMQ-CMQ topic with HTTP subscriptions: each published message is POSTed to every subscriber,
`text/plain`, with the `x-cmq-*` headers, as a JSON envelope (`msgBody` holding the message) or
SIMPLIFIED (the raw message). A delivery answered with anything but 2xx, or not answered in time, is
delivered again later; a subscription can also send duplicates on purpose."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import queue
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Subscription:
    topic: str
    url: str  # several, separated by spaces: deliveries go round-robin (a load balancer)
    format: str = "json"  # "json" (envelope) or "simplified" (raw body)
    base64_body: bool = False  # msgBody base64-encoded (seen on some CMQ paths)
    duplicates: int = 0  # extra copies of every message
    concurrent_duplicates: bool = False  # copies sent at the same moment from different senders
    timeout_s: float = 5.0
    max_attempts: int = 16  # a topic keeps a message for a day at most; we bound by attempts
    backoff_s: float = 1.0  # first redelivery delay; doubles per attempt (scaled by speedup)


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    sub: Subscription = field(compare=False)
    msg_id: str = field(compare=False)
    message: str = field(compare=False)
    attempt: int = field(compare=False, default=1)
    copy: int = field(compare=False, default=0)


class Topics:
    def __init__(self, speedup: float = 1.0, senders: int = 16, owner: int = 1250000000) -> None:
        self.speedup, self.owner = speedup, owner
        self.subscriptions: list[Subscription] = []
        # Other deliveries of every published message (topic, msg id, message): queue subscriptions.
        self.sinks: list[Callable[[str, str, str], None]] = []
        # Every delivery attempt: when it was answered (t), how long the answer took, its status.
        self.pushes: list[dict[str, Any]] = []
        self._queue: queue.PriorityQueue[_Delivery] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._busy = 0
        self._pending = 0
        self._stopped = threading.Event()
        self._local = threading.local()
        self._senders = [threading.Thread(target=self._send_loop, name=f"emulator-push-{i}", daemon=True)
                         for i in range(senders)]
        for t in self._senders:
            t.start()

    def subscribe(self, sub: Subscription) -> None:
        with self._lock:
            self.subscriptions.append(sub)

    def publish(self, topic: str, message: str) -> str:
        msg_id = str(next(self._seq) + 6942316962)
        for sink in list(self.sinks):
            sink(topic, msg_id, message)
        now = time.time()
        for sub in [s for s in self.subscriptions if s.topic == topic]:
            for copy in range(1 + sub.duplicates):
                # Sequential duplicates come a moment after the first copy; concurrent ones together.
                due = now if sub.concurrent_duplicates else now + copy * 0.05 / self.speedup
                self._put(_Delivery(due, next(self._seq), sub, msg_id, message, 1, copy))
        return msg_id

    def _put(self, delivery: _Delivery) -> None:
        with self._lock:
            self._pending += 1
        self._queue.put(delivery)

    def idle(self) -> bool:
        with self._lock:
            return self._pending == 0

    def stop(self) -> None:
        self._stopped.set()

    def _send_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                delivery = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            wait = delivery.due - time.time()
            if wait > 0:
                self._queue.put(delivery)  # not yet due: put it back and nap briefly
                time.sleep(min(wait, 0.02))
                continue
            sent = time.time()
            status = self._send(delivery)
            answered = time.time()
            with self._lock:
                self.pushes.append({"t": answered, "took_s": answered - sent, "topic": delivery.sub.topic,
                                    "msg_id": delivery.msg_id, "attempt": delivery.attempt,
                                    "copy": delivery.copy, "status": status})
            if not (isinstance(status, int) and 200 <= status < 300) \
                    and delivery.attempt < delivery.sub.max_attempts and not self._stopped.is_set():
                delay = min(delivery.sub.backoff_s * 2 ** (delivery.attempt - 1), 60.0) / self.speedup
                self._put(_Delivery(time.time() + delay, next(self._seq), delivery.sub, delivery.msg_id,
                                    delivery.message, delivery.attempt + 1, delivery.copy))
            with self._lock:
                self._pending -= 1

    def _body(self, delivery: _Delivery) -> bytes:
        sub = delivery.sub
        if sub.format == "simplified":
            return delivery.message.encode()
        body = (base64.b64encode(delivery.message.encode()).decode() if sub.base64_body
                else delivery.message)
        return json.dumps({"TopicOwner": self.owner, "topicName": sub.topic,
                           "subscriptionName": f"{sub.topic}-http", "msgId": delivery.msg_id,
                           "msgBody": body, "publishTime": int(time.time() * 1000)}).encode()

    def _send(self, delivery: _Delivery) -> int | str:
        urls = delivery.sub.url.split()
        url = urllib.parse.urlsplit(urls[(delivery.seq + delivery.attempt) % len(urls)])
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        headers = {"Content-Type": "text/plain", "User-Agent": "Qcloud Notification Service Agent",
                   "x-cmq-request-id": uuid.uuid4().hex, "x-cmq-message-id": delivery.msg_id,
                   "x-cmq-message-tag": ""}
        # Each sender keeps its connections alive between pushes, as a pushing fleet does.
        conns: dict[tuple[str, str, int | None], http.client.HTTPConnection] = \
            self._local.__dict__.setdefault("conns", {})
        where = (url.scheme, url.hostname or "127.0.0.1", url.port)
        conn = conns.get(where)
        if conn is None:
            conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            conn = conns[where] = conn_type(where[1], where[2], timeout=delivery.sub.timeout_s)
        try:
            conn.request("POST", path, body=self._body(delivery), headers=headers)
            response = conn.getresponse()
            response.read()
            if response.will_close:
                conns.pop(where).close()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            conns.pop(where, None)
            conn.close()
            return type(exc).__name__  # timeout, refused, reset: redelivered like a non-2xx
