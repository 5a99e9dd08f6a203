"""What was said in a thread before the bot was first mentioned there.

History comes from the store, and a thread the bot joins midway has none there, so
"@threadwise what do you think of the above?" would reach the model alone. The first
mention in such a thread reads it once (`conversations.replies`, paced under its tier
like a summary's reads) and quotes its latest messages ahead of the question.
"""

from __future__ import annotations

import logging

from adapters.slack.history import ReadRefused, SlackHistory
from core.summarize import SourceMessage

log = logging.getLogger(__name__)

EARLIER_MESSAGES = 40  # the latest messages quoted
EARLIER_CHARS = 8_000  # about 2,000 tokens: context, not the whole thread
READ_PAGES = 3  # a thread longer than this many pages is quoted from its first pages


async def earlier_in_thread(
    history: SlackHistory, channel: str, thread_ts: str, before_ts: str
) -> str:
    """A quoted block of the thread's messages before `before_ts`, or "" if none could
    be read (the question then goes on alone: a missing quote must not cost the answer)."""
    try:
        messages = await history.thread(channel, thread_ts, max_pages=READ_PAGES)
    except ReadRefused as exc:
        log.info("could not read the thread %s in %s for context: %s", thread_ts, channel, exc)
        return ""
    except Exception as exc:
        log.warning("reading the thread %s in %s for context failed: %s",
                    thread_ts, channel, exc)
        return ""
    earlier = [m for m in messages if float(m.id) < float(before_ts)][-EARLIER_MESSAGES:]
    lines: list[str] = []
    size = 0
    for message in reversed(earlier):  # newest first, so the cut drops the oldest
        line = _quote(message)
        if size + len(line) > EARLIER_CHARS:
            break
        lines.append(line)
        size += len(line)
    if not lines:
        return ""
    lines.reverse()
    return "Earlier in this thread, before I was mentioned:\n" + "".join(lines) + "\n"


def _quote(message: SourceMessage) -> str:
    text = message.text
    if message.files:
        text += ("\n" if text else "") + "[attached: " + ", ".join(message.files) + "]"
    first, *rest = text.splitlines() or [""]
    return f"> {message.author}: {first}\n" + "".join(f"> {line}\n" for line in rest)
