"""Re-implementations of the anchors' published reply strategies, as baselines.

Each streaming baseline reads the same fake model with the openai SDK and writes to
the platform through a Sink (the real slack_sdk / discord.py client behind it), with
none of threadwise's pacing:

- llmcord (jakobdylanc/llmcord): one edit whenever a second has passed since the last
  write *by any reply* (a bot-wide `last_task_time`), awaited inside the token loop;
  the last edit waits out the rest of that second.
- ChatGPT-in-Slack (seratch/ChatGPT-in-Slack): post a "please wait" message, then every
  20 deltas start a chat.update of the full text in its own thread (here: task), which
  nobody orders; a final update after joining them all.

The third baseline, re-reading the thread from the platform API on every turn, is a
history strategy: bench.ours.RereadingService puts it in front of our own turn.

Where the originals would abort a reply on a failed write, these count the failure
and carry on, which can only flatter them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from openai import AsyncOpenAI

log = logging.getLogger(__name__)

LLMCORD_EDIT_DELAY_S = 1.0
LLMCORD_INDICATOR = " ⚪"
CIS_DELTAS_PER_UPDATE = 20
CIS_WIP_TEXT = ":hourglass_flowing_sand: Wait a second, please ..."
CIS_LOADING = " ... :writing_hand:"


class Sink(Protocol):
    """Where a baseline writes one reply: the platform client, unpaced."""

    async def post(self, text: str) -> str: ...

    async def edit(self, message_id: str, text: str) -> None: ...


Strategy = Callable[[AsyncIterator[str], Sink], Coroutine[Any, Any, None]]


@dataclass
class Failures:
    """Writes that still failed after the client's own retries (kept, not raised)."""

    count: int = 0


async def model_deltas(client: AsyncOpenAI, model: str, question: str) -> AsyncIterator[str]:
    """The text deltas of one streamed Chat Completions reply."""
    stream = await client.chat.completions.create(
        model=model, stream=True,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
        ],
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


async def _guarded(write: Awaitable[object], failures: Failures) -> None:
    try:
        await write
    except Exception as exc:  # counted; the reply goes on
        failures.count += 1
        log.debug("baseline write failed: %s", exc)


class LlmcordStyle:
    """One shared clock for the whole bot: every reply's write resets it."""

    name = "llmcord-style"

    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        self.last_write = 0.0  # llmcord's module-level last_task_time

    async def __call__(self, deltas: AsyncIterator[str], sink: Sink) -> None:
        text = ""
        message_id: str | None = None
        async for delta in deltas:
            text += delta
            if message_id is None:
                try:
                    message_id = await sink.post(text + LLMCORD_INDICATOR)
                except Exception:
                    self.failures.count += 1
                self.last_write = time.time()
            elif time.time() - self.last_write >= LLMCORD_EDIT_DELAY_S:
                await _guarded(sink.edit(message_id, text + LLMCORD_INDICATOR), self.failures)
                self.last_write = time.time()
        if message_id is None:
            return
        wait = LLMCORD_EDIT_DELAY_S - (time.time() - self.last_write)
        if wait > 0:
            await asyncio.sleep(wait)
        await _guarded(sink.edit(message_id, text), self.failures)
        self.last_write = time.time()


class ChatGptInSlackStyle:
    """An update of the whole text every 20 deltas, each in its own unordered task."""

    name = "ChatGPT-in-Slack-style"

    def __init__(self, failures: Failures) -> None:
        self.failures = failures

    async def __call__(self, deltas: AsyncIterator[str], sink: Sink) -> None:
        try:
            message_id = await sink.post(CIS_WIP_TEXT)
        except Exception:
            self.failures.count += 1
            return
        text = ""
        count = 0
        pending: list[asyncio.Task[None]] = []
        async for delta in deltas:
            count += 1
            text += delta
            if count >= CIS_DELTAS_PER_UPDATE:
                update = _guarded(sink.edit(message_id, text + CIS_LOADING), self.failures)
                pending.append(asyncio.create_task(update))
                count = 0
        await asyncio.gather(*pending)
        await _guarded(sink.edit(message_id, text), self.failures)
