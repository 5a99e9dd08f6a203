"""The fake model as the benchmark needs it: paced replies made of distinguishable words,
with the time each word left the server.

Each user message carries a tag such as `Q12T0` (conversation 12, turn 0). The reply
to it is `k12t0w0 k12t0w1 …`, streamed at the configured time-to-first-token and
tokens per second by tests.fakes.model_server. A word counts as "left the model"
once the server has written its SSE frame to the socket.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from tests.fakes import model_server as fake
from tests.fakes.model_sse import Reply, Script, last_user_text, pieces
from tests.fakes.openai_schema import CHAT_REQUEST

TAG = re.compile(r"\bQ(\d+)T(\d+)\b")
WORD = re.compile(r"\b(k\d+t\d+)w(\d+)\b")


def question_tag(conversation: int, turn: int) -> str:
    return f"Q{conversation}T{turn}"


def reply_prefix(conversation: int, turn: int) -> str:
    return f"k{conversation}t{turn}"


def reply_words(conversation: int, turn: int, count: int) -> list[str]:
    prefix = reply_prefix(conversation, turn)
    return [f"{prefix}w{i}" for i in range(count)]


@dataclass
class Stamps:
    """When each reply was requested, when its first word left, and when every word did."""

    requested: dict[str, float]  # reply prefix -> request arrival (monotonic)
    emitted: dict[str, float]  # word -> time its frame was written (monotonic)
    first_word: dict[str, float]  # reply prefix -> first word written


class PacedModel(fake.FakeModelServer):
    """FakeModelServer whose every reply is paced and stamped (see the module docstring)."""

    def __init__(self, *, ttft_s: float, tokens_per_s: float, reply_tokens: int) -> None:
        super().__init__()
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.reply_tokens = reply_tokens
        self.stamps = Stamps({}, {}, {})

    def _next_script(self, body: dict[str, Any]) -> Script:
        found = TAG.findall(last_user_text(body))
        if not found:  # not a benchmark question (e.g. a health check): answer at once
            return Reply("ok")
        conversation, turn = (int(x) for x in found[-1])
        words = reply_words(conversation, turn, self.reply_tokens)
        return Reply(" ".join(words), ttft_s=self.ttft_s, tokens_per_s=self.tokens_per_s)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        writer = functools.partial(_StampingChatWriter, self.stamps, arrived)
        return await self._serve(
            request, fake.CHAT_PATH, CHAT_REQUEST,
            cast("type[fake._ChatWriter]", writer),
        )


class _StampingChatWriter(fake._ChatWriter):
    def __init__(self, stamps: Stamps, arrived: float, body: dict[str, Any]) -> None:
        super().__init__(body)
        self._stamps = stamps
        self._arrived = arrived

    def stream(self, reply: Reply) -> Iterator[tuple[bytes, bool]]:
        words = [w.strip() for w in pieces(reply.text)]
        first = WORD.match(words[0]) if words else None
        prefix = first.group(1) if first else None
        if prefix is not None:
            self._stamps.requested[prefix] = self._arrived
        index = 0
        for frame, is_content in super().stream(reply):
            yield frame, is_content
            # Resumed only after the server wrote the frame: the word has left.
            if is_content and index < len(words):
                now = time.monotonic()
                if prefix is not None:
                    if index == 0:
                        self._stamps.first_word[prefix] = now
                    self._stamps.emitted[words[index]] = now
                index += 1
