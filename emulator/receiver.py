"""A local stand-in for the chat robots and webhooks give-up messages go to, for tests and the demo.

It answers the way each service does: WeCom's group robot (`/cgi-bin/webhook/send?key=…`, JSON
`errcode`), DingTalk's robot (`/robot/send?access_token=…`, checking `timestamp` and `sign` when
given the robot's secret), a Slack incoming webhook (`/services/T…/B…/…`, `ok` or a 4xx reason) and
a generic webhook (`/hooks/autoretry`, checking `X-Autoretry-Signature` when given its secret). It
records every request, and can be switched down (5xx), throttled (each service's rate-limit
answer), refusing connections, and up again.

    python -m emulator.receiver [--port 9200]      # prints the AUTORETRY_NOTIFY_* to export
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from emulator.serving import send, serve_in_background

CHANNELS = ("wecom", "dingtalk", "slack", "webhook")
UP, DOWN, THROTTLED, REFUSING = "up", "down", "throttled", "refusing"


@dataclass(frozen=True)
class Received:
    channel: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int
    accepted: bool
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return _json(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: Receiver


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, dingtalk_secret: str | None = None,
                 webhook_secret: str | None = None) -> None:
        self.host = host
        self.dingtalk_secret, self.webhook_secret = dingtalk_secret, webhook_secret
        self.wecom_key = secrets.token_hex(16)
        self.dingtalk_token = secrets.token_hex(24)
        self.slack_path = f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/" \
                          f"{secrets.token_urlsafe(18)}"
        self.mode = UP
        self.down_status = 503
        self.received: list[Received] = []
        self.clock = time.time
        self._lock = threading.Lock()
        self._server = self._bind(port)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._reopen: threading.Timer | None = None

    # ---- lifecycle --------------------------------------------------------------------------------

    def _bind(self, port: int) -> _Server:
        server = _Server((self.host, port), _Handler)
        server.receiver = self
        return server

    def start(self) -> Receiver:
        self._thread = serve_in_background(self._server, "receiver-http")
        return self

    def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self.mode != REFUSING:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- switches ---------------------------------------------------------------------------------

    def down(self, status: int = 503) -> None:
        """Answer every message with `status` (a 5xx: the service is in trouble)."""
        self._listen()
        self.mode, self.down_status = DOWN, status

    def throttle(self) -> None:
        """Answer as each service does when a robot sends too fast."""
        self._listen()
        self.mode = THROTTLED

    def refuse(self, seconds: float | None = None) -> None:
        """Close the port: connections are refused (as when the host is down) until `up()`, or for
        `seconds`."""
        with self._lock:
            if self.mode == REFUSING:
                return
            self.mode = REFUSING
            self._server.shutdown()
            self._server.server_close()
        if seconds is not None:
            self._reopen = threading.Timer(seconds, self.up)
            self._reopen.daemon = True
            self._reopen.start()

    def up(self) -> None:
        self._listen()
        self.mode = UP

    def _listen(self) -> None:
        with self._lock:
            if self.mode == REFUSING:
                self._server = self._bind(self.port)
                self.mode = UP
                self.start()

    # ---- addresses and what arrived -----------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, channel: str) -> str:
        """The webhook URL of `channel` on this receiver (with its secret key, as the services do)."""
        return {
            "wecom": f"{self.base}/cgi-bin/webhook/send?key={self.wecom_key}",
            "dingtalk": f"{self.base}/robot/send?access_token={self.dingtalk_token}",
            "slack": f"{self.base}{self.slack_path}",
            "webhook": f"{self.base}/hooks/autoretry",
        }[channel]

    def env(self) -> dict[str, str]:
        """The AUTORETRY_NOTIFY_* settings that send to every channel here."""
        env = {f"AUTORETRY_NOTIFY_{c.upper()}_URL": self.url(c) for c in CHANNELS}
        if self.dingtalk_secret:
            env["AUTORETRY_NOTIFY_DINGTALK_SECRET"] = self.dingtalk_secret
        if self.webhook_secret:
            env["AUTORETRY_NOTIFY_WEBHOOK_SECRET"] = self.webhook_secret
        return env

    def accepted(self, channel: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.accepted and channel in (None, r.channel)]

    def requests(self, channel: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if channel in (None, r.channel)]

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    # ---- answers ----------------------------------------------------------------------------------

    def answer(self, channel: str, query: dict[str, str], headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str], bytes, bool]:
        """(status, headers, body, accepted) for one request, as the real service would answer."""
        if self.mode == DOWN:
            return self.down_status, {"Content-Type": "text/plain"}, b"service unavailable", False
        if channel in ("wecom", "dingtalk"):
            code, message = self._robot(channel, query, body)
            data = json.dumps({"errcode": code, "errmsg": message}).encode()
            return 200, {"Content-Type": "application/json"}, data, code == 0
        if channel == "slack":
            if self.mode == THROTTLED:
                return 429, {"Content-Type": "text/plain", "Retry-After": "1"}, b"rate_limited", False
            payload = _json(body)
            if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
                return 400, {"Content-Type": "text/plain"}, b"invalid_payload", False
            return 200, {"Content-Type": "text/html"}, b"ok", True
        if channel == "webhook":
            if self.mode == THROTTLED:
                return 429, {"Content-Type": "application/json", "Retry-After": "1"}, b"{}", False
            if self.webhook_secret and not _webhook_signed(self.webhook_secret, headers, body, self.clock()):
                return 401, {"Content-Type": "application/json"}, b'{"error":"bad signature"}', False
            if not isinstance(_json(body), dict):
                return 400, {"Content-Type": "application/json"}, b'{"error":"not JSON"}', False
            return 200, {"Content-Type": "application/json"}, b'{"ok":true}', True
        return 404, {"Content-Type": "text/plain"}, b"no such webhook", False

    def _robot(self, channel: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
        if channel == "wecom":
            if query.get("key") != self.wecom_key:
                return 93000, "invalid webhook url"
            if self.mode == THROTTLED:
                return 45009, "api freq out of limit"
        else:
            if query.get("access_token") != self.dingtalk_token:
                return 300001, "token is not exist"
            if self.dingtalk_secret:
                try:
                    ts = int(query.get("timestamp", ""))
                except ValueError:
                    return 310000, "sign not match, timestamp missing"
                if abs(self.clock() * 1000 - ts) > 3600_000:
                    return 310000, "sign not match, timestamp is too far from now"
                mac = hmac.new(self.dingtalk_secret.encode(), f"{ts}\n{self.dingtalk_secret}".encode(),
                               hashlib.sha256)
                if not hmac.compare_digest(base64.b64encode(mac.digest()).decode(), query.get("sign", "")):
                    return 310000, "sign not match"
            if self.mode == THROTTLED:
                return 130101, "send too fast, exceed 20 times per minute"
        payload = _json(body)
        if not isinstance(payload, dict) or payload.get("msgtype") not in ("text", "markdown"):
            return 40008, "invalid message type"
        return 0, "ok"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _webhook_signed(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower.get("x-autoretry-timestamp", ""))
    except ValueError:
        return False
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256)
    return abs(now - ts) <= 300 and hmac.compare_digest("sha256=" + mac.hexdigest(),
                                                         lower.get("x-autoretry-signature", ""))


def _channel(path: str, receiver: Receiver) -> str | None:
    if path == "/cgi-bin/webhook/send":
        return "wecom"
    if path == "/robot/send":
        return "dingtalk"
    if path == receiver.slack_path:
        return "slack"
    if path == "/hooks/autoretry":
        return "webhook"
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the webhook's key

    def do_GET(self) -> None:
        rx = self.server.receiver
        if urlsplit(self.path).path == "/_control/messages":
            rows = [{"channel": r.channel, "status": r.status, "accepted": r.accepted, "at": r.at,
                     "body": r.json} for r in rx.requests()]
            send(self, 200, {"Content-Type": "application/json"}, json.dumps(rows).encode())
            return
        send(self, 200, {"Content-Type": "application/json"},
                   json.dumps({"receiver": "autoretry-notify", "mode": rx.mode}).encode())

    def do_POST(self) -> None:
        rx = self.server.receiver
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = dict(parse_qsl(parts.query))
        if parts.path.startswith("/_control/"):
            self._control(rx, parts.path[len("/_control/"):], query)
            return
        channel = _channel(parts.path, rx)
        headers = dict(self.headers.items())
        if channel is None:
            send(self, 404, {"Content-Type": "text/plain"}, b"no such webhook")
            return
        status, answer_headers, answer, accepted = rx.answer(channel, query, headers, body)
        rx.record(Received(channel, parts.path, query, headers, body, status, accepted))
        send(self, status, answer_headers, answer)

    def _control(self, rx: Receiver, action: str, query: dict[str, str]) -> None:
        if action == "down":
            rx.down(int(query.get("status", "503")))
        elif action == "up":
            rx.up()
        elif action == "throttle":
            rx.throttle()
        elif action == "refuse":
            send(self, 200, {"Content-Type": "application/json"}, b'{"mode":"refusing"}')
            seconds = float(query.get("seconds", "30"))
            threading.Thread(target=rx.refuse, args=(seconds,), daemon=True).start()
            return
        else:
            send(self, 404, {"Content-Type": "text/plain"}, b"down, up, throttle or refuse")
            return
        send(self, 200, {"Content-Type": "application/json"}, json.dumps({"mode": rx.mode}).encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulator.receiver", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9200)
    ap.add_argument("--dingtalk-secret", default="SEC-local-dingtalk-secret")
    ap.add_argument("--webhook-secret", default="local-webhook-secret")
    args = ap.parse_args(argv)
    try:
        rx = Receiver(args.host, args.port, dingtalk_secret=args.dingtalk_secret,
                      webhook_secret=args.webhook_secret).start()
    except OSError as e:
        print(f"python -m emulator.receiver: cannot listen on {args.host}:{args.port}: {e.strerror}; "
              "pick another --port")
        return 1
    print(f"Notification receiver on {rx.base} (local only: these keys are throwaway)")
    for name, value in rx.env().items():
        print(f"  export {name}='{value}'")
    print(f"  switch: curl -X POST {rx.base}/_control/down | /up | /throttle | /refuse?seconds=30")
    seen = 0
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        while not done.wait(0.2):
            for r in rx.requests()[seen:]:
                body = r.json or {}
                text = (body.get("markdown", {}).get("content") or body.get("markdown", {}).get("text")
                        or body.get("text") or body.get("summary") or "")
                first = str(text).splitlines()[0] if text else ""
                print(f"{time.strftime('%H:%M:%S')} {r.channel:8} {r.status} "
                      f"{'accepted' if r.accepted else 'refused '} {first}")
                seen += 1
    rx.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
