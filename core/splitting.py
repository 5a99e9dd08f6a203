"""Split a growing Markdown reply into platform-sized parts without breaking formatting.

A part that ends inside a fenced code block gets the fence closed, and the next
part reopens it with the same info string (or a shorter form of it: see _reopening),
so every part renders on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})(.*)$")
# A closing fence is at most this long, so it always fits a part's reserve. Real fences
# use 3-5 characters; a longer one is only mis-closed, never allowed to overflow a part.
_LONGEST_FENCE = 10
# A reopened fence line takes at most 1/_REOPEN_SHARE of a part: a model may put a whole
# paragraph after ```, and repeating it at the top of every part left no room for text.
_REOPEN_SHARE = 10


def open_fence(text: str) -> str | None:
    """The opening line of a fenced block still open at the end of text, else None."""
    opening: str | None = None
    marker = ""
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if not m:
            continue
        fence, info = m.group(1), m.group(2)
        if opening is None:
            opening, marker = line.strip(), fence
        elif fence[0] == marker[0] and len(fence) >= len(marker) and not info.strip():
            opening, marker = None, ""
    return opening


def closing_for(opening: str) -> str:
    m = _FENCE.match(opening)
    return m.group(1)[:_LONGEST_FENCE] if m else "```"


def fits(text: str, limit: int) -> bool:
    """Whether text fits in limit characters as displayed mid-stream (see balance)."""
    if len(text) + _LONGEST_FENCE + 1 <= limit:
        return True  # even a closing fence fits: no need to look for one
    return len(balance(text)) <= limit


def _reopening(opening: str, limit: int) -> str:
    """The line the next part reopens a fence with: the opening line when it is short,
    else its fence and language, else the bare fence."""
    budget = max(3, limit // _REOPEN_SHARE)
    if len(opening) <= budget:
        return opening
    m = _FENCE.match(opening)
    fence = closing_for(opening)
    words = m.group(2).split() if m else []
    with_language = fence + words[0] if words else fence
    return with_language if len(with_language) <= budget else fence


def _reserve(window: str) -> int:
    """Room kept for a closing fence whenever a fence might be open at the cut."""
    fences = [m.group(1) for line in window.split("\n") if (m := _FENCE.match(line))]
    if not fences:
        return 0
    return max(8, min(_LONGEST_FENCE, max(map(len, fences))) + 1)


def balance(text: str) -> str:
    """Text as it should be displayed mid-stream: an open fence is closed."""
    opening = open_fence(text)
    return f"{text}\n{closing_for(opening)}" if opening else text


def _inline_code_open(chunk: str) -> int | None:
    """Index of an unmatched single backtick on the chunk's last line, if any."""
    start = chunk.rfind("\n") + 1
    line = chunk[start:]
    if line.lstrip().startswith(("```", "~~~")):
        return None
    ticks = [i for i, ch in enumerate(line) if ch == "`"]
    return start + ticks[-1] if len(ticks) % 2 else None


def _cut_index(body: str, limit: int, floor: int) -> int:
    """Where to cut body so that body[:cut] fits limit: paragraph, line, word, else hard."""
    window = body[:limit]
    for sep in ("\n\n", "\n", " "):
        idx = window.rfind(sep)
        if idx > floor:
            cut = idx + len(sep)
            opening = _inline_code_open(body[:cut]) if sep == " " else None
            if opening is not None and opening > floor:
                return opening
            return cut
    return limit


@dataclass(frozen=True, slots=True)
class Cut:
    part: str  # finished, self-contained text of the part
    rest: str  # what remains of the source text
    carry: str  # prefix the next part starts with (a reopened fence), or ""


def take_part(source: str, limit: int, carry: str = "") -> Cut:
    """Cut one part of at most `limit` characters off carry + source."""
    body = carry + source
    room = limit - _reserve(body[:limit])
    if carry and len(carry) >= room // 2:
        return take_part(source, limit)  # a tiny limit: no room to reopen the fence
    floor = len(carry) + max(1, (room - len(carry)) // 3)
    # Every part takes at least one character of new text, or a caller loops forever.
    cut = max(_cut_index(body, room, floor), len(carry) + 1)
    part, rest = body[:cut], body[cut:]
    opening = open_fence(part)
    if opening:
        part = part.rstrip("\n") + "\n" + closing_for(opening)
        next_carry = _reopening(opening, limit) + "\n"
    else:
        next_carry = ""
    consumed = max(0, cut - len(carry))
    return Cut(part=part.rstrip() or part, rest=source[consumed:] if rest else "", carry=next_carry)


def split_all(text: str, limit: int) -> list[str]:
    """Split a complete text into parts of at most `limit` characters."""
    parts: list[str] = []
    carry, rest = "", text
    while len(carry) + len(rest) > limit:
        cut = take_part(rest, limit, carry)
        parts.append(cut.part)
        carry, rest = cut.carry, cut.rest
    if rest.strip() or not parts:
        parts.append(carry + rest)
    return parts
