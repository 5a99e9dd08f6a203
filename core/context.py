"""Build the model request for one turn within a token budget.

Prompt caching only pays when every turn starts with the same bytes, so the order
is fixed: instructions (never per-turn data), history oldest to newest, the newest
message, and per-turn variables (`turn_context`: time, who is asking) last.

When a thread outgrows the budget we drop its oldest messages, but only at cut
points that do not move from one turn to the next. Cut points are quantised by
tokens: walking the thread from its first message, a cut point is the first
message boundary at or after every multiple of a quantum (a quarter of the
usable budget). Old messages never change, so the cut points never change; we
take the earliest one whose remainder fits. The cut then stays put (and the
provider's cached prefix stays valid) for about a quarter-budget of new
conversation before it jumps by about a quarter-budget at once. A quantum in
tokens rather than a fixed count of messages keeps the granularity right for
threads of one-liners and threads of pasted logs alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from core.model.types import FilePart, ImagePart, ModelMessage, ModelRequest, Part, TextPart
from core.tokens import Tokenizer
from core.types import Media, MediaRef, StoredMessage

ImageDetail = Literal["low", "high", "auto"]

_REQUEST_OVERHEAD_TOKENS = 3  # reply priming in chat formats
_MESSAGE_OVERHEAD_TOKENS = 4  # role and separators around each message
_TOOL_OVERHEAD_TOKENS = 10  # call id, JSON envelope, the tool-result message
_CUT_QUANTUM_DIVISOR = 4  # cut points every quarter of the usable budget
# Providers give the model each PDF page twice: its extracted text and an image
# of the page (~765 tokens at high detail). 1,500 per page covers a text-dense page.
_PDF_TOKENS_PER_PAGE = 1_500
_PDF_BYTES_PER_PAGE = 60_000  # page count fallback when the page tree is compressed
_PDF_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PDF_PAGE_COUNT = re.compile(rb"/Count\s+(\d{1,6})")
_TRUNCATION_MARKER_TOKENS = 30


@dataclass(frozen=True, slots=True)
class Assembled:
    request: ModelRequest
    dropped_messages: int  # history messages left out (oldest first)
    estimated_prompt_tokens: int
    notes: tuple[str, ...]  # user-facing, e.g. "I could only see the last 40 messages…"


@dataclass(frozen=True, slots=True)
class _Rendered:
    message: ModelMessage | None  # None: nothing to show (empty assistant turn)
    tokens: int


def assemble(
    *,
    instructions: str,
    history: Sequence[StoredMessage],
    newest: StoredMessage,
    media: Mapping[str, Media],
    tokenizer: Tokenizer,
    budget_tokens: int,
    reserve_output_tokens: int,
    image_detail: ImageDetail | str,
    cache_key: str | None,
    turn_context: str = "",
) -> Assembled:
    """The request for this turn: instructions, as much recent history as fits, newest last."""
    detail = _detail(image_detail)
    renderer = _Renderer(tokenizer, media, detail)
    usable = max(1, budget_tokens - reserve_output_tokens)
    notes: list[str] = []

    fixed = _REQUEST_OVERHEAD_TOKENS + tokenizer.count(instructions)
    newest_rendered = renderer.render(newest, extra=turn_context)
    if fixed + newest_rendered.tokens > usable:
        newest_rendered = _shrink_newest(newest, renderer, turn_context, usable - fixed, notes)
    room = usable - fixed - newest_rendered.tokens

    rendered = [renderer.render(m) for m in history]
    cut = _cut_point(history, [r.tokens for r in rendered], room, usable)
    kept = [r.message for r in rendered[cut:] if r.message is not None]
    if cut:
        notes.append(_dropped_note(len(kept) + 1))

    messages = (*kept, newest_rendered.message) if newest_rendered.message else tuple(kept)
    estimate = fixed + newest_rendered.tokens + sum(r.tokens for r in rendered[cut:])
    return Assembled(
        request=ModelRequest(instructions=instructions, messages=messages, cache_key=cache_key),
        dropped_messages=cut,
        estimated_prompt_tokens=estimate,
        notes=tuple(notes),
    )


def _detail(value: str) -> ImageDetail:
    if value == "low":
        return "low"
    if value == "high":
        return "high"
    return "auto"


# --- trimming -----------------------------------------------------------------------


def _cut_point(
    history: Sequence[StoredMessage], costs: Sequence[int], room: int, usable: int
) -> int:
    """How many of the oldest messages to drop (0 when everything fits)."""
    total = sum(costs)
    if total <= max(0, room):
        return 0
    quantum = max(1, usable // _CUT_QUANTUM_DIVISOR)
    cut = len(history)  # nothing fits: keep only the newest message
    dropped, next_mark = 0, quantum
    for i, cost in enumerate(costs):
        dropped += cost
        if dropped < next_mark:
            continue
        next_mark = (dropped // quantum + 1) * quantum
        if total - dropped <= room:  # i+1 is a cut point and the rest fits
            cut = i + 1
            break
    # Start on a user turn when one follows; its reply alone makes little sense.
    start = cut
    while start < len(history) and history[start].role != "user":
        start += 1
    return start if start < len(history) else cut


def _dropped_note(seen: int) -> str:
    if seen <= 1:
        return "This thread is too long for me to see; I could only read your latest message."
    return f"I could only see the last {seen} messages of this thread."


def _shrink_newest(
    newest: StoredMessage, renderer: _Renderer, turn_context: str, room: int, notes: list[str]
) -> _Rendered:
    """Make the newest message fit alone: cut its text from the middle, then drop attachments."""
    refs = list(newest.media)
    while True:
        bare = renderer.render(newest, extra=turn_context, text="", refs=refs)
        text_room = room - bare.tokens - _TRUNCATION_MARKER_TOKENS
        if text_room > 0 or not refs:
            break
        skipped = refs.pop()
        notes.append(f"{skipped.name} was too large to fit in my context, so I did not read it.")
    head, tail, omitted = renderer.tokenizer.truncate_middle(newest.text, max(0, text_room))
    if not omitted:
        return renderer.render(newest, extra=turn_context, refs=refs)
    text = f"{head}\n\n[… {omitted} characters cut from the middle of this message …]\n\n{tail}"
    notes.append(
        f"Your message was too long for me to read whole; I skipped about {omitted:,} "
        "characters from its middle."
    )
    return renderer.render(newest, extra=turn_context, text=text, refs=refs)


# --- rendering ----------------------------------------------------------------------


class _Renderer:
    """Turns stored messages into model messages, with their token cost."""

    def __init__(
        self, tokenizer: Tokenizer, media: Mapping[str, Media], detail: ImageDetail
    ) -> None:
        self.tokenizer = tokenizer
        self.media = media
        self.detail: ImageDetail = detail

    def render(
        self,
        msg: StoredMessage,
        *,
        extra: str = "",
        text: str | None = None,
        refs: Sequence[MediaRef] | None = None,
    ) -> _Rendered:
        body = msg.text if text is None else text
        parts: list[tuple[Part, int]] = []
        if msg.role == "user":
            label = f"{speaker_label(msg)}: {body}" if body else f"{speaker_label(msg)}:"
            parts.append(self._text(label))
        elif body:
            parts.append(self._text(body))
        for ref in msg.media if refs is None else refs:
            parts.append(self._attachment(ref))
        if extra:
            parts.append(self._text(extra))
        if not parts and not msg.tools:
            return _Rendered(None, 0)
        tokens = _MESSAGE_OVERHEAD_TOKENS + sum(cost for _, cost in parts)
        for tool in msg.tools:
            tokens += _TOOL_OVERHEAD_TOKENS + sum(
                self.tokenizer.count(s) for s in (tool.name, tool.arguments, tool.output)
            )
        message = ModelMessage(msg.role, tuple(part for part, _ in parts), msg.tools)
        return _Rendered(message, tokens)

    def _text(self, text: str) -> tuple[Part, int]:
        return TextPart(text), self.tokenizer.count(text)

    def _attachment(self, ref: MediaRef) -> tuple[Part, int]:
        item = self.media.get(ref.sha256)
        if item is None:
            return self._text(f"[attachment {ref.name} is no longer available]")
        if item.kind == "image":
            width, height = item.width or 2048, item.height or 768  # unknown: worst case
            cost = self.tokenizer.image_tokens(width, height, self.detail)
            return ImagePart(item.data, item.mime, self.detail), cost
        if item.kind == "pdf":
            return FilePart(item.data, item.mime, item.name), pdf_tokens(item.data)
        content = item.data.decode("utf-8", "replace")
        return self._text(f"[file: {item.name}]\n{content}\n[end of file: {item.name}]")


def speaker_label(msg: StoredMessage) -> str:
    """The name a user turn is prefixed with ("Alice: …"); one line, never empty."""
    name = " ".join(msg.author_name.split()) or " ".join(msg.author_id.split())
    return name.replace(":", "") or "User"


def pdf_tokens(data: bytes) -> int:
    """Estimated prompt tokens of a PDF: pages x (page text + page image).

    Pages are counted from the page tree (`/Type /Page` objects, or the largest
    `/Count`); PDFs whose objects are compressed hide both, so then assume one
    page per 60 kB.
    """
    objects = len(_PDF_PAGE_OBJECT.findall(data))
    counts = [int(n) for n in _PDF_PAGE_COUNT.findall(data)]
    pages = max(objects, max(counts, default=0))
    if pages == 0:
        pages = max(1, len(data) // _PDF_BYTES_PER_PAGE)
    return pages * _PDF_TOKENS_PER_PAGE
