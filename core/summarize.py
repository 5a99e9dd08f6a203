"""Summarize a thread (or a stretch of a channel) with any ModelClient, whatever its length.

A thread that fits the context budget takes one model call. A longer one is cut into
chunks on message boundaries (counted with the Tokenizer), each chunk becomes notes in
a map step that runs with bounded concurrency, and a reduce step combines the notes,
recursively while the notes themselves exceed the budget. Platform-free: adapters
hand in `SourceMessage`s and render the Markdown the result carries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.model.types import (
    Finished,
    ModelClient,
    ModelError,
    ModelMessage,
    ModelRequest,
    TextDelta,
    TextPart,
    UsageReport,
)
from core.summary_prompt import (
    final_instructions,
    label_for,
    link_citations,
    map_instructions,
    message_block,
    notes_content,
    reduce_instructions,
    thread_content,
)
from core.tokens import Tokenizer
from core.types import Usage

log = logging.getLogger(__name__)

Progress = Callable[[str], Awaitable[None]]

FRAME_TOKENS = 64  # the content's own framing (title line, closing words) and message overhead
NOTE_GAP_TOKENS = 16  # a <part_notes> wrapper
MAX_REDUCE_ROUNDS = 6
MIN_BUDGET = 256  # tokens of thread content one call must be able to take
EMPTY_SUMMARY = "_(The model returned an empty summary.)_"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message to summarize, already in plain Markdown with the speaker's name."""

    id: str  # platform message id (Slack ts, Discord snowflake)
    author: str
    text: str
    link: str  # where a citation of this message points (permalink / jump URL)
    at: float  # unix time
    files: tuple[str, ...] = ()  # attachment names
    image_notes: tuple[str, ...] = ()  # what the bot said earlier about its images


@dataclass(frozen=True, slots=True)
class Summary:
    markdown: str  # the summary with citations as Markdown links
    usage: Usage  # every model call together
    map_calls: int  # 0 when the thread fit one call
    reduce_calls: int
    chunks: tuple[tuple[str, ...], ...]  # message ids per chunk (one chunk: no map step)
    messages: int
    cited: tuple[str, ...] = ()  # ids of the messages the summary links to
    truncated: bool = False  # a message or an answer had to be cut
    notes: tuple[str, ...] = field(default=(), repr=False)  # the map step's notes

    @property
    def model_calls(self) -> int:
        return 1 if self.map_calls == 0 else self.map_calls + self.reduce_calls


@dataclass
class _Run:
    usage: Usage = field(default_factory=Usage)
    reduce_calls: int = 0
    truncated: bool = False


class Summarizer:
    def __init__(
        self, model: ModelClient, tokenizer: Tokenizer, *, context_tokens: int,
        max_concurrency: int = 4, reserve_output_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.max_concurrency = max(1, max_concurrency)
        # Room left for the answer (and a reasoning model's thinking) in every call.
        self.reserve = reserve_output_tokens or min(4096, context_tokens // 4)
        count = tokenizer.count
        room = context_tokens - self.reserve - FRAME_TOKENS
        self.single_budget = room - count(final_instructions())
        self.map_budget = room - count(map_instructions(9999, 9999))
        self.reduce_budget = room - count(reduce_instructions(final=True))

    # -- planning -----------------------------------------------------------------------

    def blocks(self, messages: Sequence[SourceMessage]) -> tuple[list[str], bool]:
        """Each message as the model sees it; one too long for a chunk is cut in the middle."""
        out: list[str] = []
        cut = False
        for i, m in enumerate(messages):
            block = message_block(label_for(i), m.author, m.at, m.text, m.files, m.image_notes)
            if self.tokenizer.count(block) > self.map_budget:
                bare = message_block(label_for(i), m.author, m.at, "", m.files, m.image_notes)
                room = max(32, self.map_budget - self.tokenizer.count(bare) - 24)
                head, tail, omitted = self.tokenizer.truncate_middle(m.text, room)
                text = f"{head}\n[… {omitted:,} characters left out …]\n{tail}"
                block = message_block(label_for(i), m.author, m.at, text, m.files, m.image_notes)
                cut = True
            out.append(block)
        return out, cut

    def plan(self, messages: Sequence[SourceMessage]) -> list[list[int]]:
        """Message indices per chunk; a single chunk means one call summarizes everything."""
        blocks, _ = self.blocks(messages)
        return self._chunk(blocks)

    def _chunk(self, blocks: Sequence[str]) -> list[list[int]]:
        sizes = [self.tokenizer.count(b) + 1 for b in blocks]
        if sum(sizes) <= self.single_budget:
            return [list(range(len(blocks)))]
        return _pack(sizes, self.map_budget)

    # -- running ------------------------------------------------------------------------

    async def summarize(
        self, messages: Sequence[SourceMessage], *, title: str, progress: Progress | None = None
    ) -> Summary:
        if not messages:
            raise ValueError("nothing to summarize")
        if min(self.single_budget, self.map_budget, self.reduce_budget) < MIN_BUDGET:
            # Said to the requester like a model failure; the bot itself keeps running.
            raise ModelError(f"the model's context ({self.context_tokens:,} tokens, "
                             "MODEL_CONTEXT_TOKENS) is too small to summarize with")
        report = _reporter(progress)
        blocks, cut = self.blocks(messages)
        chunks = self._chunk(blocks)
        run = _Run(truncated=cut)
        ids = tuple(tuple(messages[i].id for i in chunk) for chunk in chunks)
        notes: list[str] = []
        if len(chunks) == 1:
            await report(f"Summarizing {len(messages):,} messages…")
            content = thread_content(title, blocks, part=None)
            text = await self._call(final_instructions(), content, run)
            map_calls = 0
        else:
            notes = await self._map(title, blocks, chunks, run, report)
            map_calls = len(chunks)
            text = await self._reduce(title, notes, run, report)
        links = {label_for(i): m.link for i, m in enumerate(messages)}
        by_label = {label_for(i): m.id for i, m in enumerate(messages)}
        markdown, used = link_citations(text.strip() or EMPTY_SUMMARY, links)
        return Summary(
            markdown=markdown, usage=run.usage, map_calls=map_calls,
            reduce_calls=run.reduce_calls, chunks=ids, messages=len(messages),
            cited=tuple(dict.fromkeys(by_label[label] for label in used)),
            truncated=run.truncated, notes=tuple(notes),
        )

    async def _map(
        self, title: str, blocks: Sequence[str], chunks: Sequence[Sequence[int]], run: _Run,
        report: Progress,
    ) -> list[str]:
        gate = asyncio.Semaphore(self.max_concurrency)
        parts = len(chunks)

        async def one(n: int, chunk: Sequence[int]) -> str:
            async with gate:
                await report(f"Summarizing part {n} of {parts}…")
                content = thread_content(title, [blocks[i] for i in chunk], part=(n, parts))
                return await self._call(map_instructions(n, parts), content, run)

        return await _all(one(n, c) for n, c in enumerate(chunks, 1))

    async def _reduce(self, title: str, notes: list[str], run: _Run, report: Progress) -> str:
        """Combine notes into the summary; first shrink them in rounds while they do not fit."""
        count = self.tokenizer.count
        for round_no in range(1, MAX_REDUCE_ROUNDS + 1):
            if count(notes_content(title, notes, final=True)) <= self.reduce_budget:
                break
            groups = _pack([count(n) + NOTE_GAP_TOKENS for n in notes], self.reduce_budget)
            if all(len(g) == 1 for g in groups):
                # No two notes fit together: cut each so that pairs do.
                notes = [self._cut(n, self.reduce_budget // 2 - NOTE_GAP_TOKENS, run)
                         for n in notes]
                continue
            await report(f"Combining {len(notes)} partial summaries (round {round_no})…")
            notes = await self._combine(title, notes, groups, run)
        else:
            share = max(64, self.reduce_budget // max(1, len(notes)) - NOTE_GAP_TOKENS)
            notes = [self._cut(n, share, run) for n in notes]
        await report(f"Combining {len(notes)} partial summaries…")
        content = notes_content(title, notes, final=True)
        run.reduce_calls += 1
        return await self._call(reduce_instructions(final=True), content, run)

    async def _combine(
        self, title: str, notes: Sequence[str], groups: Sequence[Sequence[int]], run: _Run
    ) -> list[str]:
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(group: Sequence[int]) -> str:
            if len(group) == 1:
                return notes[group[0]]
            async with gate:
                run.reduce_calls += 1
                content = notes_content(title, [notes[i] for i in group], final=False)
                return await self._call(reduce_instructions(final=False), content, run)

        return await _all(one(g) for g in groups)

    def _cut(self, text: str, max_tokens: int, run: _Run) -> str:
        head, tail, omitted = self.tokenizer.truncate_middle(text, max(32, max_tokens))
        if not omitted and not tail:
            return head
        run.truncated = True
        return f"{head}\n[…]\n{tail}"

    async def _call(self, instructions: str, content: str, run: _Run) -> str:
        request = ModelRequest(
            instructions=instructions,
            messages=(ModelMessage("user", (TextPart(content),)),),
            tools_enabled=False,
        )
        text: list[str] = []
        async for event in self.model.stream(request):
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, UsageReport):
                run.usage = run.usage + event.usage
            elif isinstance(event, Finished) and event.reason == "length":
                run.truncated = True
        return "".join(text)


async def _all(calls: Iterable[Coroutine[Any, Any, str]]) -> list[str]:
    """Run calls together; the first failure cancels the rest and is raised as itself
    (a ModelError keeps its plain reason instead of hiding in an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as group_error:
        raise _first_leaf(group_error) from None
    return [t.result() for t in tasks]


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _pack(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Greedy, in order: consecutive items per group while their sizes fit the budget."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        groups.append(current)
    return groups


def _reporter(progress: Progress | None) -> Progress:
    async def report(text: str) -> None:
        if progress is None:
            return
        try:
            await progress(text)
        except Exception as exc:  # showing progress must never fail the summary
            log.debug("progress update failed: %s", exc)

    return report
