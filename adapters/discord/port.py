"""The Discord ChatPort: how replies are written (the core's streamer decides when)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import discord

from core.ports import FileRefused, WriteLimits, new_nonce
from core.types import FileRef, ThreadKey

log = logging.getLogger(__name__)

MAX_CHARS = 2000
# Discord allows 5 message writes (posts and edits together) per 5 s per channel, counted in a
# window that opens at the first write. We pace at exactly that, one write a second (burst 1:
# evenly spaced writes keep the largest gap smallest). If network jitter bunches five writes
# into a window so that a sixth would land inside it, discord.py sees X-RateLimit-Remaining: 0
# on the fifth and holds the sixth until the window resets (milliseconds), never a 429.
# Every request also takes its turn in the bot's global budget (request_budget.py).
BUCKET_RATE = 1.0
BUCKET_BURST = 1
MIN_EDIT_GAP_S = 1.0
MAX_RATE_LIMIT_WAIT_S = 10.0
TYPING_MAX_S = 180.0  # a typing indicator never outlives a stuck turn by much
REMEMBERED = 1024

NO_PINGS = discord.AllowedMentions.none()
# Declared types we never download: the core could not use them whatever the bytes are.
UNUSABLE_PREFIXES = ("video/", "audio/")
UNUSABLE_TYPES = ("application/zip", "application/x-7z-compressed", "application/x-rar")

T = TypeVar("T")


def channel_limits(bucket: str) -> WriteLimits:
    return WriteLimits(MAX_CHARS, MIN_EDIT_GAP_S, bucket, BUCKET_RATE, BUCKET_BURST)


class Remembered(OrderedDict[str, T]):
    """A small LRU map: the port must not grow without bound in a long-running bot."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: str, value: T) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class AttachmentIndex:
    """Attachments seen in recent messages, so fetch_file can find them by FileRef.id."""

    def __init__(self) -> None:
        self._items: Remembered[discord.Attachment] = Remembered()

    def add(self, attachment: discord.Attachment) -> FileRef:
        self._items.remember(str(attachment.id), attachment)
        return FileRef(
            id=str(attachment.id), name=attachment.filename, url=attachment.url,
            declared_size=attachment.size, declared_type=attachment.content_type,
        )

    async def read(self, ref: FileRef, *, max_bytes: int) -> bytes:
        """Download from the CDN (no token is ever sent there) after checking the caps."""
        attachment = self._items.get(ref.id)
        if attachment is None:
            raise FileRefused(ref.name, "is no longer available; please attach it again")
        if attachment.size > max_bytes:
            raise FileRefused(ref.name, f"is {_mb(attachment.size)}; the limit is {_mb(max_bytes)}")
        declared = (attachment.content_type or "").split(";")[0].strip().lower()
        if declared.startswith(UNUSABLE_PREFIXES) or declared in UNUSABLE_TYPES:
            raise FileRefused(ref.name, f"is a {declared} file, which I can't read")
        try:
            data = await attachment.read()
        except discord.HTTPException as exc:
            raise FileRefused(ref.name, f"could not be downloaded (HTTP {exc.status})") from None
        if len(data) > max_bytes:
            raise FileRefused(ref.name, f"is larger than the {_mb(max_bytes)} limit")
        return data


async def with_rate_limit_retry(call: Callable[[], Awaitable[T]]) -> T:
    """discord.py retries a 429 itself only when it carries `Via`; retry the others once."""
    try:
        return await call()
    except discord.HTTPException as exc:
        if exc.status != 429:
            raise
        retry_after = _retry_after(exc)
        log.warning("Discord said 429 without Via; retrying in %.2f s", retry_after)
        await asyncio.sleep(retry_after)
        return await call()


def _retry_after(exc: discord.HTTPException) -> float:
    headers = getattr(exc.response, "headers", {}) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return min(MAX_RATE_LIMIT_WAIT_S, max(0.0, float(headers[name])))
        except (KeyError, TypeError, ValueError):
            continue
    return 1.0


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


class DiscordPort:
    """Writes into channels, threads and DMs. Every write pings nobody."""

    def __init__(self, client: discord.Client, attachments: AttachmentIndex) -> None:
        self._client = client
        self.attachments = attachments
        self._shown: Remembered[str] = Remembered()
        self._typing: dict[ThreadKey, asyncio.Task[None]] = {}

    def limits(self, key: ThreadKey) -> WriteLimits:
        return channel_limits(f"discord:{key.channel}")

    def _channel(self, key: ThreadKey) -> discord.PartialMessageable:
        guild_id = None if key.space == "dm" else int(key.space)
        return self._client.get_partial_messageable(int(key.channel), guild_id=guild_id)

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        self._stop_typing(key)
        channel = self._channel(key)
        # Every post gets one, so that discord.py's own retry of it cannot double it either.
        nonce = nonce or new_nonce()
        # A thread opened from a message has that message's id; the message itself lives in
        # the parent channel, so it cannot be referenced from inside the thread.
        if reply_to is not None and reply_to != key.channel:
            reference = discord.MessageReference(
                message_id=int(reply_to), channel_id=channel.id, fail_if_not_exists=False
            )
            message = await with_rate_limit_retry(lambda: channel.send(
                markdown, reference=reference, allowed_mentions=NO_PINGS, nonce=nonce
            ))
        else:
            message = await with_rate_limit_retry(
                lambda: channel.send(markdown, allowed_mentions=NO_PINGS, nonce=nonce)
            )
        # With a nonce Discord creates the message once: a retry whose first try was
        # created (its answer lost) gets that message back, holding the older text.
        # (Discord trims the content it stores: whitespace alone is no difference.)
        if message.content.strip() == markdown.strip():
            self._shown.remember(str(message.id), markdown)
        else:
            self._shown.remember(str(message.id), message.content)
            await self.edit(key, str(message.id), markdown)
        return str(message.id)

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self._shown.get(message_id) == markdown:
            return
        target = self._channel(key).get_partial_message(int(message_id))
        await with_rate_limit_retry(
            lambda: target.edit(content=markdown, allowed_mentions=NO_PINGS)
        )
        self._shown.remember(message_id, markdown)

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        await self.edit(key, message_id, markdown)  # no write when the text is already shown

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        if status is None:
            self._stop_typing(key)
            return
        task = self._typing.get(key)
        if task is None or task.done():
            self._typing[key] = asyncio.create_task(self._type(key), name=f"typing:{key}")

    async def _type(self, key: ThreadKey) -> None:
        with contextlib.suppress(asyncio.TimeoutError, discord.HTTPException):
            async with asyncio.timeout(TYPING_MAX_S), self._channel(key).typing():
                await asyncio.Event().wait()

    def typing_active(self, key: ThreadKey) -> bool:
        task = self._typing.get(key)
        return task is not None and not task.done()

    def _stop_typing(self, key: ThreadKey) -> None:
        task = self._typing.pop(key, None)
        if task is not None:
            task.cancel()

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        return await self.attachments.read(ref, max_bytes=max_bytes)

    async def aclose(self) -> None:
        tasks = list(self._typing.values())
        self._typing.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
