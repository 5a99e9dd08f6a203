"""What a turn says in the thread when something went wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.ports import ChatPort
from core.types import MessageStatus, ThreadKey

if TYPE_CHECKING:  # the streamer uses plain_reason: no import cycle at run time
    from core.streaming import ReplyStreamer


def failure_marker(reason: str, *, partial: bool) -> str:
    if partial:
        return f"\n\n⚠️ _Reply cut off: {reason}_"
    return f"⚠️ Sorry, I couldn't answer: {reason}"


# Why a model stopped, in words, for the reasons that need telling.
_FINISH_WORDS = {
    "content_filter": "content filter",
    "length": "it reached its length limit before writing anything",
}


def finish_note(streamer: ReplyStreamer, text: str, finish: str | None) -> MessageStatus:
    """Say in the reply why the model stopped when users would otherwise be left
    guessing; returns the status to store. A reply with no visible text at all would
    show nothing (and clear "is thinking…"), so it becomes a failure that says so."""
    if not text.strip():
        why = "" if finish in (None, "stop") else f" ({_FINISH_WORDS.get(finish, finish)})"
        streamer.push(failure_marker(f"the model returned no answer{why}", partial=False))
        return "failed"
    if finish == "length":
        streamer.push("\n\n_(The reply reached the length limit.)_")
    elif finish == "content_filter":
        streamer.push("\n\n⚠️ _The model's content filter stopped the reply here._")
        return "partial"
    return "complete"


def plain_reason(exc: BaseException) -> str:
    """Words for the thread: a store's user_reason (no server paths), else the reason."""
    reason = (getattr(exc, "user_reason", None) or getattr(exc, "reason", None) or str(exc)
              or type(exc).__name__)
    return str(reason).splitlines()[0][:300]


async def note_unsaved(
    port: ChatPort, key: ThreadKey, streamer: ReplyStreamer, reason: str
) -> None:
    """Append a note to the reply's last message (or below it when that is full)."""
    ids = streamer.message_ids
    if not ids:
        return
    note = f"⚠️ _I couldn't save this reply, so I may not remember it later: {reason}_"
    last = streamer.last_shown
    if len(last) + len(note) + 2 <= port.limits(key).max_chars:
        await port.finish(key, ids[-1], f"{last}\n\n{note}")
    else:
        extra = await port.post(key, note, reply_to=ids[-1])
        await port.finish(key, extra, note)

