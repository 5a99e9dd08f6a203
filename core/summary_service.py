"""What every summary surface shares: the configured Summarizer, notes on images the bot
has already seen (from the store), usage accounting, the rendered result, and a
progress display that never floods a platform with edits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from core.model.types import ModelClient
from core.ports import HistoryStore
from core.settings import Settings
from core.summarize import Progress, SourceMessage, Summarizer, Summary
from core.tokens import Tokenizer
from core.types import StoredMessage, ThreadKey

if TYPE_CHECKING:
    from core.service import ConversationService

log = logging.getLogger(__name__)

NOTE_CHARS = 300  # of the bot's earlier answer about a message's images
MAX_NOTE_LOOKUPS = 100  # store look-ups per summary (messages with attachments only)
MAX_HOURS = 24 * 7


class SummaryService:
    def __init__(
        self, *, settings: Settings, store: HistoryStore, model: ModelClient,
        tokenizer: Tokenizer | None = None, max_concurrency: int = 4,
    ) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        self.summarizer = Summarizer(
            model, tokenizer or Tokenizer(), context_tokens=settings.context_tokens,
            max_concurrency=max_concurrency,
            reserve_output_tokens=settings.model_max_completion_tokens,
        )

    @classmethod
    def for_service(cls, service: ConversationService) -> SummaryService:
        """Share the conversation service's store, model client and tokenizer."""
        return cls(settings=service.settings, store=service.store, model=service.model,
                   tokenizer=service.tokenizer)

    async def summarize(
        self, messages: Sequence[SourceMessage], *, title: str, key: ThreadKey, user_id: str,
        progress: Progress | None = None,
    ) -> Summary:
        """Summarize and record the tokens against the requester and the channel."""
        summary = await self.summarizer.summarize(messages, title=title, progress=progress)
        try:
            await self.store.record_usage(key, user_id, self.model.model, summary.usage,
                                          time.time())
        except Exception as exc:  # accounting must not lose a finished summary
            log.warning("could not record summary usage: %s", exc)
        return summary

    async def with_image_notes(
        self, platform: str, channel: str, messages: Sequence[SourceMessage]
    ) -> list[SourceMessage]:
        """Attach what the bot answered about a message's images, where it already saw them."""
        out: list[SourceMessage] = []
        lookups = 0
        for m in messages:
            if m.files and lookups < MAX_NOTE_LOOKUPS:
                lookups += 1
                notes = await self._notes(platform, channel, m.id)
                if notes:
                    m = replace(m, image_notes=m.image_notes + notes)
            out.append(m)
        return out

    async def _notes(self, platform: str, channel: str, message_id: str) -> tuple[str, ...]:
        try:
            found = await self.store.locate(platform, channel, message_id)
            images = [r.name for r in found.media if r.kind == "image"] if found else []
            if found is None or not images:
                return ()
            answer = _answer_to(found, await self.store.load_thread(found.key))
        except Exception as exc:  # notes are a bonus; the platform's text is what counts
            log.debug("no stored notes for %s: %s", message_id, exc)
            return ()
        if answer is None:
            return ()
        text = " ".join(answer.text.split())
        if len(text) > NOTE_CHARS:
            text = text[:NOTE_CHARS].rsplit(" ", 1)[0] + "…"
        return (f"{', '.join(images)}: the assistant described it as: {text}",)


def _answer_to(question: StoredMessage, thread: Sequence[StoredMessage]) -> StoredMessage | None:
    for m in thread:
        if m.role == "assistant" and m.parent_id == question.id and m.text.strip():
            return m
    return None


def render(summary: Summary, *, heading: str) -> str:
    """The message people see: a heading, the sections, and what it cost."""
    return f"{heading}\n\n{summary.markdown.strip()}\n\n{cost_line(summary)}"


def cost_line(summary: Summary) -> str:
    u = summary.usage
    if summary.map_calls:
        how = f"in {summary.map_calls} parts, {summary.model_calls} model calls"
    else:
        how = "in 1 model call"
    cut = " · some long content was shortened" if summary.truncated else ""
    return (
        f"_{summary.messages:,} message{'s' if summary.messages != 1 else ''} summarized "
        f"{how} · {u.total:,} tokens ({u.prompt_tokens:,} in, {u.completion_tokens:,} out)"
        f"{cut}_"
    )


def hours_label(hours: float) -> str:
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


class ProgressBoard:
    """Shows the newest progress text, at most one write per min_gap_s, without ever making
    the summarizer wait for a platform write. Texts superseded meanwhile are skipped."""

    def __init__(self, write: Callable[[str], Awaitable[None]], *, min_gap_s: float) -> None:
        self._write = write
        self._gap = min_gap_s
        self._latest: str | None = None
        self._shown: str | None = None
        self._last_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self.writes = 0

    async def __call__(self, text: str) -> None:
        self._latest = text
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="summary-progress")

    async def _drain(self) -> None:
        while self._latest is not None and self._latest != self._shown:
            wait = self._last_at + self._gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            text = self._latest
            if text is None:
                return
            self._writing = True
            try:
                await self._write(text)
                self.writes += 1
            except Exception as exc:  # progress is a nicety; the summary goes on
                log.debug("progress write failed: %s", exc)
            finally:
                self._writing = False
            self._shown = text
            self._last_at = time.monotonic()

    async def close(self) -> None:
        """Stop showing progress (a write under way finishes first, so it cannot land
        after the final text)."""
        self._latest = None
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if not self._writing:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
