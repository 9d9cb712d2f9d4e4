"""The body each channel expects for a give-up message (pure functions; sources in docs/notify.md).

- WeCom group robot: `{"msgtype": "markdown", "markdown": {"content": ...}}` (content ≤ 4096 bytes).
- DingTalk robot: `{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}`.
- Slack incoming webhook: `{"text": fallback, "blocks": [...]}` in Slack's mrkdwn.
- Generic webhook: the message's fields as JSON, with `type` and `id` (the failure key).
"""

from __future__ import annotations

import re
from typing import Any

from handler.notify.message import GiveUp

WECOM_MAX_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _flat(text: str) -> str:
    # Values come from job names and StateReasons: one line each, so they cannot forge a field.
    return _CONTROL.sub(" ", text).strip()


# WeCom's markdown takes <font> tags and both robots render links, emphasis and code, but neither
# documents backslash escapes: swap the characters that open markup for look-alikes instead.
_DEFANG = str.maketrans({"<": "\u2039", ">": "\u203a", "*": "\u2217", "`": "\u02cb",
                         "[": "\uff3b", "]": "\uff3d"})


def _markdown(text: str) -> str:
    return _flat(text).translate(_DEFANG)


def _slack(text: str) -> str:
    # Slack's mrkdwn asks for exactly these three escapes.
    return _flat(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markdown_lines(msg: GiveUp) -> list[str]:
    lines = [f"> {label}: {_markdown(value)}" for label, value in msg.fields()]
    lines.append(f"History: `{msg.history}`")
    return lines


def wecom(msg: GiveUp) -> dict[str, Any]:
    content = "\n".join([f"**{_markdown(msg.title)}**", *_markdown_lines(msg)])
    data = content.encode("utf-8")
    if len(data) > WECOM_MAX_BYTES:
        content = data[:WECOM_MAX_BYTES - 3].decode("utf-8", "ignore") + "..."
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk(msg: GiveUp) -> dict[str, Any]:
    # DingTalk wants a blank line between markdown paragraphs to break them.
    text = "\n\n".join([f"### {_markdown(msg.title)}", *_markdown_lines(msg)])
    return {"msgtype": "markdown", "markdown": {"title": _flat(msg.title)[:64], "text": text}}


def slack(msg: GiveUp) -> dict[str, Any]:
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{_slack(value)[:1900]}"}
              for label, value in msg.fields()]
    return {
        "text": _slack(f"{msg.title}: {msg.why}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _flat(msg.title)[:150]}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"History: `{msg.history}`"}]},
        ],
    }


def webhook(msg: GiveUp) -> dict[str, Any]:
    return {"type": "job.given_up", "id": msg.failure_key, **msg.value(),
            "end_time": msg.end_time, "history_command": msg.history, "summary": msg.why}
