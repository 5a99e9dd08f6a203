"""Section 6: prompt tokens per turn over a 40-turn thread with photos, and how much of
each prompt is an unchanged prefix of the previous one (what a provider can cache).

Ours: the real ConversationService (history, media normalisation, context assembly,
wire format) answers 40 turns through an in-memory chat port; we read back the exact
Chat Completions bodies the fake model received. Baseline: llmcord's prompt recipe
over the same conversation (system prompt with the current date and time first, the
last 25 messages, photos as uploaded).
"""

from __future__ import annotations

import base64
import io
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bench.images import synthetic_photo
from bots.compose import open_core
from core.settings import DEFAULT_SYSTEM_PROMPT
from core.tokens import Tokenizer, load_encoding
from tests.fakes.chat_port import Conversation, MemoryPort, settings_for
from tests.fakes.model_server import CHAT_PATH, FakeModelServer

TURNS = 40
PHOTO_TURNS = (0, 12, 27)
LLMCORD_MAX_MESSAGES = 25
TURN_GAP_S = 90.0  # people take a minute or two between turns
MESSAGE_OVERHEAD = 4  # role and separators (as core.context counts them)
REQUEST_OVERHEAD = 3
CACHE_MIN_TOKENS, CACHE_STEP = 1024, 128  # OpenAI's prompt caching rule

Unit = tuple[object, ...]


@dataclass
class PromptSeries:
    name: str
    tokens: list[int] = field(default_factory=list)
    prefix_share: list[float] = field(default_factory=list)  # turn 1 has none: 0.0
    cacheable: list[int] = field(default_factory=list)
    image_bytes: list[int] = field(default_factory=list)


def user_text(turn: int) -> str:
    return (f"Turn {turn}: could you look at this again and tell me what changed since the "
            f"last version, and what we should do next about item {turn}?")


def assistant_text(turn: int) -> str:
    body = " ".join(f"Point {i} about item {turn}: keep the change small and test it."
                    for i in range(12))
    return f"Here is what I see for turn {turn}. {body}"


class _Units:
    """A prompt as a sequence of token-sized units: text tokens, image tiles, separators."""

    def __init__(self) -> None:
        self.encoding = load_encoding()

    def of_body(self, messages: Sequence[dict[str, Any]]) -> tuple[list[Unit], int]:
        units: list[Unit] = []
        image_bytes = 0
        for message in messages:
            units += [("sep", str(message.get("role")), i) for i in range(MESSAGE_OVERHEAD)]
            content = message.get("content")
            parts: list[dict[str, Any]] = (
                [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            )
            for part in parts:
                if part.get("type") == "text":
                    units += [("t", t) for t in self.encoding.encode_ordinary(part["text"])]
                elif part.get("type") == "image_url":
                    image = part["image_url"]
                    raw = base64.b64decode(image["url"].split(",", 1)[1])
                    image_bytes += len(image["url"])
                    with Image.open(io.BytesIO(raw)) as im:
                        cost = Tokenizer.image_tokens(*im.size, image.get("detail", "auto"))
                    key = hash(raw)
                    units += [("img", key, i) for i in range(cost)]
        return units, image_bytes


def _common_prefix(a: Sequence[Unit], b: Sequence[Unit]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def series(name: str, prompts: list[tuple[list[Unit], int]]) -> PromptSeries:
    out = PromptSeries(name)
    previous: list[Unit] = []
    for units, image_bytes in prompts:
        total = len(units) + REQUEST_OVERHEAD
        shared = _common_prefix(previous, units)
        out.tokens.append(total)
        out.prefix_share.append(shared / total if previous else 0.0)
        cached = 0
        if shared >= CACHE_MIN_TOKENS:
            cached = CACHE_MIN_TOKENS + (shared - CACHE_MIN_TOKENS) // CACHE_STEP * CACHE_STEP
        out.cacheable.append(cached)
        out.image_bytes.append(image_bytes)
        previous = units
    return out


def _llmcord_prompts(photos: dict[int, bytes], units: _Units) -> list[tuple[list[Unit], int]]:
    prompts = []
    history: list[dict[str, Any]] = []
    start = time.time()
    for turn in range(TURNS):
        content: Any = user_text(turn)
        if turn in photos:
            url = "data:image/jpeg;base64," + base64.b64encode(photos[turn]).decode()
            content = [{"type": "text", "text": user_text(turn)},
                       {"type": "image_url", "image_url": {"url": url}}]
        history.append({"role": "user", "content": content})
        now = time.localtime(start + turn * TURN_GAP_S)
        system = (f"{DEFAULT_SYSTEM_PROMPT} Today's date is {time.strftime('%B %d %Y', now)}. "
                  f"The current time is {time.strftime('%H:%M:%S', now)}.")
        messages = [{"role": "system", "content": system}, *history[-LLMCORD_MAX_MESSAGES:]]
        prompts.append(units.of_body(messages))
        history.append({"role": "assistant", "content": assistant_text(turn)})
    return prompts


async def run_cost() -> tuple[PromptSeries, PromptSeries]:
    photos = {turn: synthetic_photo() for turn in PHOTO_TURNS}
    model = FakeModelServer()
    await model.start()
    try:
        with tempfile.TemporaryDirectory(prefix="threadwise-cost-") as workdir:
            settings = settings_for(model, Path(workdir) / "threadwise.db")
            async with open_core(settings) as core:
                conversation = Conversation(core, MemoryPort(min_gap_s=0.0), model)
                for turn in range(TURNS):
                    model.reply(assistant_text(turn))
                    files = {f"photo{turn}.jpg": photos[turn]} if turn in photos else None
                    await conversation.say(user_text(turn), files=files)
    finally:
        await model.stop()
    if model.schema_errors:
        raise RuntimeError("requests violated the OpenAI schema: " + model.schema_errors[0])
    units = _Units()
    bodies = [r.body for r in model.requests if r.path == CHAT_PATH]
    ours = series("threadwise", [units.of_body(b["messages"]) for b in bodies])
    return ours, series("llmcord-style", _llmcord_prompts(photos, units))
