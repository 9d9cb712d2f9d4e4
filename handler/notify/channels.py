"""Where give-up messages go: WeCom and DingTalk group robots, Slack incoming webhooks and a generic
signed JSON webhook. Each channel turns a message into one HTTP POST and its answer into success or
a `ChannelError` that says whether trying again can help.

A webhook URL is a credential (its path or query carries the key), and so is a signing secret:
neither appears in any error, repr or log line. Errors name the channel and its host only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from handler.notify import formats
from handler.notify.message import GiveUp
from handler.notify.signing import dingtalk_sign, signed_headers

DEFAULT_TIMEOUT_S = 5.0
DETAIL_CHARS = 200
# Robot answers (HTTP 200 with an errcode) that mean "later", not "never": system busy and the
# per-robot rate limits (WeCom 45009; DingTalk 130101 and 410100, 20 messages a minute).
WECOM_TRANSIENT = frozenset({-1, 45009})
DINGTALK_TRANSIENT = frozenset({-1, 130101, 410100})


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # down, refused, timed out, 5xx, throttled: try again later
    PERMANENT = "permanent"  # the channel refused this message or this URL: a person must look


class ChannelError(Exception):
    def __init__(self, channel: str, kind: ErrorKind, detail: str,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{channel}: {kind}: {detail}")
        self.channel, self.kind, self.detail, self.retry_after_s = channel, kind, detail, retry_after_s


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


Post = Callable[[str, bytes, dict[str, str], float], Response]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Response:
    """POST with the standard library. Imported here: urllib.request pulls in http.client, email and
    ssl, which a function that never notifies should not pay for at cold start."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return Response(answer.status, answer.read(65536), dict(answer.headers.items()))
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, e.read(65536), dict(e.headers.items()) if e.headers else {})


def masked_url(url: str) -> str:
    """scheme://host[:port]/*** : enough to tell channels apart in a log, nothing to post with."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


class Channel(Protocol):
    name: str

    def send(self, message: GiveUp) -> None:
        """Deliver `message` once, or raise ChannelError."""
        ...


class WebhookChannel:
    """One POST of a JSON body to a secret URL. Subclasses build the request and read the answer."""

    name = "webhook"

    def __init__(self, url: str, *, secret: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 post: Post = http_post, clock: Callable[[], float] = time.time) -> None:
        self._url, self._secret = url, secret
        self.timeout_s, self._post, self._clock = timeout_s, post, clock
        self.where = masked_url(url)
        parts = urlsplit(url)
        secrets = [url, parts.path, parts.query, *(v for _, v in parse_qsl(parts.query)),
                   *(p for p in parts.path.split("/") if len(p) >= 8)]
        if secret:
            secrets.append(secret)
        # Longest first, so a URL is masked whole before its parts are.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where})"

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text[:DETAIL_CHARS]

    def send(self, message: GiveUp) -> None:
        url, body, headers = self.request(message)
        try:
            answer = self._post(url, body, headers, self.timeout_s)
        # Refused, reset, DNS: not delivered. Timed out: perhaps delivered; sent again, since twice
        # beats never (docs/notify.md).
        except Exception as e:
            cause = getattr(e, "reason", None)  # URLError wraps the socket's error
            err = cause if isinstance(cause, BaseException) else e
            raise ChannelError(self.name, ErrorKind.TRANSIENT,
                               self.scrub(f"{type(err).__name__}: {err}")) from None
        self.check(answer)

    # ---- what subclasses say --------------------------------------------------------------------

    def request(self, message: GiveUp) -> tuple[str, bytes, dict[str, str]]:
        body = _json(formats.webhook(message))
        headers = {"Content-Type": "application/json", "X-Autoretry-Message-Id": message.failure_key}
        if self._secret:
            headers.update(signed_headers(self._secret, body, self._clock()))
        return self._url, body, headers

    def check(self, answer: Response) -> None:
        if 200 <= answer.status < 300:
            return
        self._fail_by_status(answer)

    def _fail_by_status(self, answer: Response) -> None:
        transient = answer.status >= 500 or answer.status in (408, 425, 429)
        text = answer.body[:100].decode("utf-8", "replace")
        raise ChannelError(self.name, ErrorKind.TRANSIENT if transient else ErrorKind.PERMANENT,
                           self.scrub(f"HTTP {answer.status}: {text}"), retry_after_s=_retry_after(answer))

    def _check_errcode(self, answer: Response, transient_codes: frozenset[int]) -> None:
        if answer.status != 200:
            self._fail_by_status(answer)
        data = answer.json()
        code = data.get("errcode") if isinstance(data, dict) else None
        if code == 0:
            return
        if not isinstance(code, int):
            raise ChannelError(self.name, ErrorKind.TRANSIENT, "HTTP 200 without an errcode")
        kind = ErrorKind.TRANSIENT if code in transient_codes else ErrorKind.PERMANENT
        raise ChannelError(self.name, kind, self.scrub(f"errcode {code}: {data.get('errmsg', '')}"))


class WeComChannel(WebhookChannel):
    """WeCom (企业微信) group robot: `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`."""

    name = "wecom"

    def request(self, message: GiveUp) -> tuple[str, bytes, dict[str, str]]:
        return self._url, _json(formats.wecom(message)), {"Content-Type": "application/json"}

    def check(self, answer: Response) -> None:
        self._check_errcode(answer, WECOM_TRANSIENT)


class DingTalkChannel(WebhookChannel):
    """DingTalk (钉钉) custom robot: `https://oapi.dingtalk.com/robot/send?access_token=...`, signed
    when the robot's security setting is "加签" (a secret starting with SEC)."""

    name = "dingtalk"

    def request(self, message: GiveUp) -> tuple[str, bytes, dict[str, str]]:
        url = self._url
        if self._secret:
            ms = int(self._clock() * 1000)
            query = urlencode({"timestamp": str(ms), "sign": dingtalk_sign(self._secret, ms)})
            url += ("&" if urlsplit(url).query else "?") + query
        return url, _json(formats.dingtalk(message)), {"Content-Type": "application/json"}

    def check(self, answer: Response) -> None:
        self._check_errcode(answer, DINGTALK_TRANSIENT)


class SlackChannel(WebhookChannel):
    """Slack incoming webhook: `https://hooks.slack.com/services/T…/B…/…`; answers 200 `ok`, or a
    4xx with a short reason (`invalid_payload`, `channel_is_archived`, …), or 429 when throttled."""

    name = "slack"

    def request(self, message: GiveUp) -> tuple[str, bytes, dict[str, str]]:
        return self._url, _json(formats.slack(message)), {"Content-Type": "application/json"}


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _retry_after(answer: Response) -> float | None:
    raw = next((v for k, v in answer.headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None
