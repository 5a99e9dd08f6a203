"""What a Slack workspace shows its users: messages per channel and thread, edits and
stream appends applied, assistant statuses, and who a message would ping."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field

# How Slack parses a message's text for notifications: special mentions and user,
# user-group and channel references in angle brackets, plus the plain words that
# Slack's Markdown rendering turns into broadcasts.
_PING_TOKENS = re.compile(
    r"<!(?:channel|here|everyone)(?:\|[^>]*)?>"
    r"|<!subteam\^[A-Z0-9]+(?:\|[^>]*)?>"
    r"|<@[UW][A-Z0-9]+(?:\|[^>]*)?>"
    r"|(?<![\w\u200b])@(?:here|channel|everyone)\b"
)


def pings_in(text: str) -> list[str]:
    """The mention tokens in text that would notify someone."""
    return _PING_TOKENS.findall(text)


@dataclass
class Message:
    channel: str
    ts: str
    thread_ts: str | None
    user: str
    text: str  # what a user sees (text or markdown_text)
    bot_id: str | None = None
    kind: str = "text"  # "text" | "markdown_text" | "stream"
    streaming: bool = False
    stream_started: float = 0.0
    recipient: str | None = None  # a stream's recipient_user_id: whom it answers
    appends: int = 0
    edits: int = 0
    files: list[dict[str, object]] = field(default_factory=list)
    broadcast: bool = False  # a thread reply "also sent to #channel"
    metadata: dict[str, object] | None = None  # chat.postMessage's message metadata

    @property
    def root(self) -> str:
        return self.thread_ts or self.ts

    def as_api(self, *, with_metadata: bool = False) -> dict[str, object]:
        """As the Web API shows it; metadata only when include_all_metadata asked."""
        out: dict[str, object] = {"type": "message", "ts": self.ts, "user": self.user,
                                  "text": self.text}
        if with_metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.bot_id:
            out["bot_id"] = self.bot_id
        if self.files:
            out["files"] = self.files
        if self.broadcast:
            out["subtype"] = "thread_broadcast"
        return out


@dataclass
class ChannelInfo:
    """What conversations.info knows of a channel; unknown channels are public with the bot in."""

    id: str
    name: str
    is_private: bool = False
    bot_member: bool = True
    members: set[str] | None = None  # None: every workspace member


@dataclass
class Ephemeral:
    """A message only `user` sees (chat.postEphemeral)."""

    channel: str
    user: str
    thread_ts: str | None
    text: str
    ts: str


class WorkspaceState:
    """Messages by channel; ts values strictly increase like Slack's."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[str, Message]] = {}
        self.statuses: dict[tuple[str, str], list[str]] = {}
        self.suggested_prompts: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.channel_infos: dict[str, ChannelInfo] = {}
        self.ephemerals: list[Ephemeral] = []
        self._seq = itertools.count(1)

    def next_ts(self, at: float | None = None) -> str:
        """A new ts; `at` back-dates it (the sequence keeps it unique)."""
        return f"{int(time.time() if at is None else at)}.{next(self._seq):06d}"

    def info(self, channel: str) -> ChannelInfo:
        return self.channel_infos.get(channel) or ChannelInfo(channel, channel.lower())

    def add(self, msg: Message) -> Message:
        self.channels.setdefault(msg.channel, {})[msg.ts] = msg
        if msg.bot_id and msg.thread_ts:
            # Slack clears an assistant status once the app replies in the thread.
            self.statuses.setdefault((msg.channel, msg.thread_ts), []).append("")
        return msg

    def get(self, channel: str, ts: str) -> Message | None:
        return self.channels.get(channel, {}).get(ts)

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        msgs = [m for m in self.channels.get(channel, {}).values() if m.root == thread_ts]
        return sorted(msgs, key=lambda m: m.ts)

    def top_level(self, channel: str) -> list[Message]:
        # A broadcast reply shows in the channel as well as in its thread.
        msgs = [m for m in self.channels.get(channel, {}).values()
                if m.thread_ts in (None, m.ts) or m.broadcast]
        return sorted(msgs, key=lambda m: m.ts, reverse=True)

    def all_messages(self) -> list[Message]:
        return [m for msgs in self.channels.values() for m in msgs.values()]

    def status(self, channel: str, thread_ts: str) -> str:
        history = self.statuses.get((channel, thread_ts), [])
        return history[-1] if history else ""
