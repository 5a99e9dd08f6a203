"""Slack permalinks: built for citations, parsed from what people paste.

A permalink is the workspace URL (auth.test's `url`) + `archives/{channel}/p{ts without
the dot}`; a reply adds `?thread_ts={root}&cid={channel}`. Building them ourselves
costs no API call (chat.getPermalink is one call per message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(r"^/archives/([A-Z0-9]+)/p(\d{10})(\d{6})/?$")
_TS = re.compile(r"^\d{10}\.\d{6}$")


@dataclass(frozen=True, slots=True)
class SlackLink:
    channel: str
    ts: str  # the linked message
    thread_ts: str | None  # its thread's root when the link points at a reply

    @property
    def root(self) -> str:
        """The thread the linked message belongs to (or starts)."""
        return self.thread_ts or self.ts


def permalink(workspace_url: str, channel: str, ts: str, thread_ts: str | None = None) -> str:
    link = f"{workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel}"
    return link


def parse_slack_link(text: str) -> SlackLink | None:
    """A Slack message permalink (`<…|label>` wrapping allowed), else None."""
    text = text.strip().removeprefix("<").removesuffix(">").split("|", 1)[0]
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not (
        host == "slack.com" or host.endswith((".slack.com", ".slack-gov.com"))
    ):
        return None
    m = _PATH.match(parts.path)
    if m is None:
        return None
    channel, ts = m.group(1), f"{m.group(2)}.{m.group(3)}"
    thread = parse_qs(parts.query).get("thread_ts", [None])[0]
    thread_ts = thread if thread and _TS.match(thread) and thread != ts else None
    return SlackLink(channel, ts, thread_ts)
