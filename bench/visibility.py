"""When each reply word first became visible on the platform, read from the emulators.

Slack: a SlackServer subclass looks at the message a write touched right after the
emulator applied it (posts, updates, stream appends). Discord: the emulator keeps
every write with its content and time; we replay the accepted ones in order.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from bench.paced_model import WORD
from tests.fakes.discord_server import DiscordServer
from tests.fakes.slack_server import SlackServer

SLACK_WRITES = frozenset({
    "chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream",
    "chat.stopStream",
})
_CREATES = frozenset({"chat.postMessage", "chat.startStream"})


class Visibility:
    """First-visible time per reply word, and how often a message went backwards."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.regressions = 0  # writes that showed fewer reply words than the message had
        self._shown: dict[str, int] = {}

    def observe(self, message_id: str, text: str, at: float) -> None:
        found = WORD.findall(text)
        if len(found) < self._shown.get(message_id, 0):
            self.regressions += 1
        self._shown[message_id] = len(found)
        for prefix, index in found:
            word = f"{prefix}w{index}"
            if word not in self.seen:
                self.seen[word] = at


class VisibleSlack(SlackServer):
    """The Slack emulator, noting what each accepted message write made visible."""

    def __init__(self) -> None:
        super().__init__()
        self.visible = Visibility()

    def _record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int,
        error: str | None,
    ) -> None:
        super()._record(method, params, request, status, error)
        if status != 200 or error is not None or method not in SLACK_WRITES:
            return
        channel = str(params.get("channel") or "")
        messages = self.state.channels.get(channel, {})
        if method in _CREATES:
            # The emulator has just stored the new message: the channel's newest.
            message = next(reversed(messages.values()), None) if messages else None
        else:
            message = messages.get(str(params.get("ts")))
        if message is not None:
            self.visible.observe(f"{channel}:{message.ts}", message.text, time.monotonic())

    @property
    def writes(self) -> int:
        return sum(
            1 for c in self.calls if c.method in SLACK_WRITES and c.status == 200 and not c.error
        )

    def read_calls(self, method: str = "conversations.replies") -> int:
        return len(self.calls_to(method))


class DiscordVisibility:
    """Replays the Discord emulator's accepted writes into a Visibility."""

    def __init__(self, server: DiscordServer) -> None:
        self.server = server
        self.visible = Visibility()
        self._cursor = 0
        # Writes carry wall-clock times; everything else in the bench is monotonic.
        self._offset = time.time() - time.monotonic()

    def refresh(self) -> Visibility:
        writes = self.server.writes
        for write in writes[self._cursor:]:
            if write.status == 200 and write.content is not None and write.message_id:
                self.visible.observe(write.message_id, write.content, write.at - self._offset)
        self._cursor = len(writes)
        return self.visible

    @property
    def writes(self) -> int:
        return sum(
            1 for w in self.server.writes if w.status == 200 and w.kind in ("post", "edit")
        )

    @property
    def rate_limited(self) -> int:
        return len(self.server.rate_limits)
