"""SlackChatPort: how a reply reaches Slack. The core's ReplyStreamer decides when.

A reply message is a native stream (chat.startStream/appendStream/stopStream through
slack_sdk's AsyncChatStream) whenever Slack lets us; the core hands us the full text
so far and we append only the new suffix. Whenever a stream cannot continue (refused,
expired after ~5 minutes, out of Tier 2 budget, a call lost to a timeout or reset, or
the text was rewritten rather than extended) the same message continues with
chat.update and `markdown_text`, which rewrites it whole.

Why max_chars = 3,900: `markdown_text` accepts 12,000 characters, but Slack rejects
`text` above ~4,000 (msg_too_long) and collapses long messages behind "Show more";
parts of at most one screen read better in a thread, and keeping under the `text`
limit means any fallback path can carry the same part unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api_errors import api_error
from adapters.slack.files import SlackFileFetcher
from adapters.slack.lost_posts import LostPosts, maybe_performed
from adapters.slack.markup import neutralise
from adapters.slack.rate import SlackRateGate
from core.ports import WriteLimits, new_nonce
from core.splitting import closing_for, open_fence
from core.types import FileRef, ThreadKey

log = logging.getLogger(__name__)

MAX_CHARS = 3_900
# Errors meaning this workspace/app will not stream at all (not worth retrying).
STREAM_REFUSED = {
    "unknown_method", "not_allowed", "not_allowed_token_type", "missing_scope",
    "feature_not_enabled", "method_deprecated", "team_not_allowed",
}
STATUS_UNAVAILABLE = STREAM_REFUSED | {"invalid_thread", "channel_type_not_supported"}


@dataclass
class _Reply:
    """One bot message we are still writing."""

    key: ThreadKey
    ts: str
    shown: str  # what Slack shows now (appended stream text or last update)
    stream: AsyncChatStream | None
    touched: float


def _unbalanced(text: str) -> str:
    """Drop the fence the core adds to close an open code block mid-stream: a stream
    cannot take text back, so that fence is sent only when the block really ends."""
    idx = text.rfind("\n")
    if idx < 0:
        return text
    tail = text[idx + 1:]
    opening = open_fence(text[:idx])
    if opening is not None and tail == closing_for(opening):
        return text[:idx]
    return text


class SlackChatPort:
    def __init__(
        self, client: AsyncWebClient, files: SlackFileFetcher, *, gate: SlackRateGate,
        speed: float = 1.0, streaming: bool = True, stream_idle_s: float = 30.0,
        max_requesters: int = 10_000, posts: AsyncWebClient | None = None,
    ) -> None:
        self._client = client
        # Calls that create or extend a message: a client that does not resend them when
        # the answer is lost (see lost_posts.py).
        self.posts = posts or client
        self.lost = LostPosts(client, gate)
        self._files = files
        self._gate = gate
        self._speed = speed
        self._streaming = streaming
        self._stream_idle_s = stream_idle_s
        self._replies: dict[str, _Reply] = {}
        # (channel, ts of a message) -> (user, team) a reply to that message answers.
        self._requesters: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self._max_requesters = max_requesters
        self._status_off: set[str] = set()  # "dm" / "channel": setStatus unavailable there
        self._janitor: asyncio.Task[None] | None = None

    # -- limits and bookkeeping -----------------------------------------------------

    def limits(self, key: ThreadKey) -> WriteLimits:
        if any(r.key == key and r.stream is not None for r in self._replies.values()):
            # A live native stream grows by chat.appendStream: Tier 4 (~100/min per
            # workspace), a budget of its own, so edits can follow the model closely.
            return self._limits(key, 0.25, f"slack-append:{key.space}", 100, 10)
        # chat.update is Tier 3 (~50/min) per workspace, shared by every thread.
        return self._limits(key, 1.0, f"slack:{key.space}", 50, 3)

    def _limits(
        self, key: ThreadKey, gap_s: float, bucket: str, per_minute: int, burst: int
    ) -> WriteLimits:
        # Posts are paced by chat.postMessage's own limit (as the gate in post() is),
        # not by the edit budget; the core waits for it before it reads the text.
        post = self._gate.rates["chat.postMessage"]
        return WriteLimits(
            max_chars=MAX_CHARS, min_edit_gap_s=gap_s / self._speed, bucket=bucket,
            bucket_rate=per_minute / 60 * self._speed, bucket_burst=burst,
            post_bucket=f"slack-post:{key.space}:{key.channel}",
            post_rate=post.per_minute / 60 * self._speed, post_burst=post.burst,
        )

    def remember_requester(
        self, key: ThreadKey, message_ts: str, user_id: str, team_id: str
    ) -> None:
        """Streams outside DMs must name the person they answer: whoever wrote the
        message a reply answers (not whoever spoke last in the thread)."""
        entry = (key.channel, message_ts)
        self._requesters[entry] = (user_id, team_id)
        self._requesters.move_to_end(entry)
        while len(self._requesters) > self._max_requesters:
            self._requesters.popitem(last=False)

    @property
    def open_streams(self) -> int:
        return sum(1 for r in self._replies.values() if r.stream is not None)

    # -- writing --------------------------------------------------------------------

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        text = neutralise(markdown)
        start = _unbalanced(text) or text
        requester = self._requesters.get((key.channel, reply_to)) if reply_to else None
        after = reply_to or key.root  # a lost post of ours would be newer than this
        # A complete reply is one chat.postMessage: a stream would also need a Tier 2
        # chat.stopStream for nothing.
        started = None if final else await self._start_stream(key, start, requester, after)
        if started is not None:
            ts, stream = started
            self._track(key, ts, start, stream)
            self._continue_for(key, ts, requester)
            return ts

        nonce = nonce or new_nonce()

        async def send() -> str:
            await self._gate.acquire("chat.postMessage", key.space, key.channel)
            return await self.lost.post_message(
                self.posts, nonce, channel=key.channel, thread_ts=key.root,
                markdown_text=text, unfurl_links=False, unfurl_media=False,
            )

        ts, _ = await self.lost.create(key, after, text, send, nonce=nonce)
        self._track(key, ts, text, None)
        self._continue_for(key, ts, requester)
        return ts

    def _continue_for(self, key: ThreadKey, ts: str, requester: tuple[str, str] | None) -> None:
        """A reply's next part is posted in reply to this one: it answers the same person."""
        if requester is not None:
            self.remember_requester(key, ts, *requester)

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        text = neutralise(markdown)
        reply = self._replies.get(message_id) or self._track(key, message_id, "", None)
        reply.touched = time.monotonic()
        if reply.stream is not None:
            raw = _unbalanced(text)
            if raw.startswith(reply.shown):
                if await self._append(reply, raw):
                    return
            else:
                await self._close_stream(reply)
        if text != reply.shown:
            await self._update(reply, text)

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        text = neutralise(markdown)
        reply = self._replies.pop(message_id, None) or _Reply(key, message_id, "", None, 0.0)
        maybe_open = False  # a stream whose stop failed may still show as streaming
        if reply.stream is not None:
            if text.startswith(reply.shown):
                if await self._stop(reply, text[len(reply.shown):]):
                    return
                maybe_open = True
            else:
                await self._close_stream(reply)
        if text != reply.shown or maybe_open:
            # chat.update on a message still streaming is refused, and then stops it.
            await self._update(reply, text)

    def _track(self, key: ThreadKey, ts: str, shown: str, stream: AsyncChatStream | None) -> _Reply:
        reply = _Reply(key, ts, shown, stream, time.monotonic())
        self._replies[ts] = reply
        if stream is not None and self._janitor is None:
            self._janitor = asyncio.create_task(self._stop_idle_streams(), name="slack-janitor")
        return reply

    async def _update(self, reply: _Reply, text: str) -> None:
        await self._gate.acquire("chat.update", reply.key.space)
        try:
            await self._client.chat_update(
                channel=reply.key.channel, ts=reply.ts, markdown_text=text
            )
        except SlackApiError as exc:
            if api_error(exc) != "cant_update_message":
                raise
            # A stream we do not hold (a restarted process left it open): end it first.
            await self._gate.acquire("chat.stopStream", reply.key.space)
            await self._client.chat_stopStream(channel=reply.key.channel, ts=reply.ts)
            await self._gate.acquire("chat.update", reply.key.space)
            await self._client.chat_update(
                channel=reply.key.channel, ts=reply.ts, markdown_text=text
            )
        reply.shown = text

    # -- native streaming -----------------------------------------------------------

    async def _start_stream(
        self, key: ThreadKey, text: str, requester: tuple[str, str] | None, after: str
    ) -> tuple[str, AsyncChatStream | None] | None:
        """(ts, the stream to grow it by) of a new streamed message; the stream is None
        when only a lost answer's message was found. None: post instead."""
        if not self._streaming or not text:
            return None
        is_dm = key.channel.startswith("D")
        if requester is None and not is_dm:
            return None
        # Tier 2 is tight; a reply that cannot start a stream now is posted instead.
        if not self._gate.try_acquire("chat.startStream", key.space):
            return None
        user_id, team_id = requester or (None, None)
        opened: list[AsyncChatStream] = []

        async def send() -> str:
            stream = await self.posts.chat_stream(
                channel=key.channel, thread_ts=key.root, recipient_team_id=team_id,
                recipient_user_id=user_id, buffer_size=1,
            )
            opened.append(stream)
            await stream.append(markdown_text=text)
            return str(stream.ts or "")

        try:
            ts, found = await self.lost.create(key, after, text, send, tries=1)
        except SlackApiError as exc:  # not started: post instead
            error = api_error(exc)
            if error in STREAM_REFUSED:
                log.info("Slack refused streaming (%s); replies use chat.update", error)
                self._streaming = False
            else:
                log.warning("chat.startStream failed (%s); posting instead", error)
            return None
        except Exception as exc:
            if not maybe_performed(exc):
                raise
            log.warning("chat.startStream failed (%s); posting instead", type(exc).__name__)
            return None
        if not ts:
            return None
        if found:
            # A stream we hold no object for: end it now, so that it cannot stay
            # "streaming"; chat.update carries the reply on.
            await self._end_unheld_stream(key, ts)
            return ts, None
        return ts, opened[-1]

    async def _end_unheld_stream(self, key: ThreadKey, ts: str) -> None:
        try:
            await self._gate.acquire("chat.stopStream", key.space)
            await self._client.chat_stopStream(channel=key.channel, ts=ts)
        except Exception as exc:  # _update() stops it when it finds it still open
            log.info("could not end the stream of %s yet: %s", ts, _error(exc))

    async def _append(self, reply: _Reply, text: str) -> bool:
        delta = text[len(reply.shown):]
        if not delta:
            return True
        assert reply.stream is not None
        await self._gate.acquire("chat.appendStream", reply.key.space)
        try:
            await reply.stream.append(markdown_text=delta)
        except Exception as exc:
            # Refused, expired, or lost on the way (timeout, reset): the stream object
            # still buffers this delta, so sending through it again would show it twice.
            # chat.update rewrites the whole message instead.
            log.info("stream %s ended (%s); continuing with chat.update", reply.ts, _error(exc))
            reply.stream = None
            return False
        reply.shown = text
        return True

    async def _stop(self, reply: _Reply, delta: str) -> bool:
        assert reply.stream is not None
        await self._gate.acquire("chat.stopStream", reply.key.space)
        try:
            await reply.stream.stop(markdown_text=delta or None)
        except Exception as exc:  # as in _append: never flush through this stream again
            log.info("stream %s could not be stopped (%s); finishing with chat.update",
                     reply.ts, _error(exc))
            reply.stream = None
            return False
        reply.shown += delta
        reply.stream = None
        return True

    async def _close_stream(self, reply: _Reply) -> None:
        """End a stream as it is, so chat.update can take the message over."""
        if reply.stream is not None:
            await self._stop(reply, "")
            reply.stream = None

    async def _stop_idle_streams(self) -> None:
        """A message posted but never finished (e.g. an error notice) must not keep
        showing as 'streaming' until Slack expires it after ~5 minutes."""
        while True:
            await asyncio.sleep(max(0.05, self._stream_idle_s / 4))
            now = time.monotonic()
            for reply in list(self._replies.values()):
                if reply.stream is not None and now - reply.touched > self._stream_idle_s:
                    try:
                        await self._close_stream(reply)
                    except Exception as exc:  # keep the janitor alive
                        log.debug("closing idle stream %s failed: %s", reply.ts, exc)
                    if reply.stream is None and now - reply.touched > self._stream_idle_s:
                        self._replies.pop(reply.ts, None)

    # -- status and files -------------------------------------------------------------

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        kind = "dm" if key.channel.startswith("D") else "channel"
        if kind in self._status_off:
            return
        if not self._gate.try_acquire("assistant.threads.setStatus", key.space):
            return  # a status is a nicety; never wait for budget
        try:
            await self._client.assistant_threads_setStatus(
                channel_id=key.channel, thread_ts=key.root, status=status or ""
            )
        except SlackApiError as exc:
            error = api_error(exc)
            if error in STATUS_UNAVAILABLE:
                self._status_off.add(kind)
                if error in STREAM_REFUSED:
                    self._status_off.update({"dm", "channel"})
                log.debug("assistant status unavailable in %s threads (%s)", kind, error)
            else:
                log.debug("assistant.threads.setStatus failed: %s", error)

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        return await self._files.fetch(ref, max_bytes=max_bytes)

    async def aclose(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
            self._janitor = None


def _error(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return api_error(exc)
    return type(exc).__name__
