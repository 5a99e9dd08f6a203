"""Reading a Discord thread, or a channel's recent messages, for a summary.

Raw REST through discord.py's own HTTPClient (the bot's, or a logged-in one for the
command line: no gateway needed), which keeps to Discord's per-route rate-limit
buckets. GET /channels/{id}/messages pages forward with `after`, 100 at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import discord
from discord.http import HTTPClient

from adapters.discord.links import jump_url
from adapters.discord.markup import convert
from core.summarize import Progress, SourceMessage

log = logging.getLogger(__name__)

PAGE = 100  # Discord's maximum
MAX_MESSAGES = 10_000  # a summary never reads more than this (cost bound)
THREAD_TYPES = {10, 11, 12}
# Default, reply, slash-command response, thread starter: what people said.
READ_TYPES = {0, 19, 20, 21}
DISCORD_EPOCH_MS = 1_420_070_400_000


class ReadRefused(Exception):
    """Discord will not let us read there; the text says so in plain words."""


@dataclass(frozen=True, slots=True)
class Place:
    id: str
    guild: str | None
    type: int
    parent: str | None
    name: str

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES


def snowflake_at(unix_s: float) -> int:
    """The smallest snowflake of that moment (for `after=`)."""
    return max(0, int(unix_s * 1000) - DISCORD_EPOCH_MS) << 22


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def _speaker(message: Mapping[str, Any]) -> str:
    author = message.get("author") or {}
    member = message.get("member") or {}
    return str(member.get("nick") or author.get("global_name") or author.get("username")
               or "someone")


class DiscordHistory:
    def __init__(self, http: HTTPClient, *, bot_id: int) -> None:
        self.http = http
        self.bot_id = bot_id

    async def place(self, channel_id: str) -> Place:
        try:
            data = await self.http.get_channel(int(channel_id))
        except discord.Forbidden:
            raise ReadRefused("I don't have access to that channel.") from None
        except discord.NotFound:
            raise ReadRefused("That channel doesn't exist, or I can't see it.") from None
        raw = cast("Mapping[str, Any]", data)
        guild = raw.get("guild_id")
        parent = raw.get("parent_id")
        return Place(str(raw["id"]), str(guild) if guild else None, int(raw.get("type", 0)),
                     str(parent) if parent else None, str(raw.get("name") or "a DM"))

    async def thread(
        self, place: Place, *, before: int | None = None, progress: Progress | None = None
    ) -> list[SourceMessage]:
        """The whole thread, with the message it was opened from (which lives in the parent)."""
        raw = await self._forward(place.id, 0, before, progress, "the thread")
        starter = await self._starter(place)
        if starter is not None and all(m["id"] != starter["id"] for m in raw):
            raw.insert(0, starter)
        return self._sources(place, raw)

    async def since(
        self, place: Place, oldest: float, *, before: int | None = None,
        progress: Progress | None = None,
    ) -> list[SourceMessage]:
        raw = await self._forward(place.id, snowflake_at(oldest), before, progress, "the channel")
        return self._sources(place, raw)

    async def after(
        self, place: Place, message_id: int, *, progress: Progress | None = None
    ) -> list[SourceMessage]:
        """From one message (included) to now."""
        raw = await self._forward(place.id, message_id - 1, None, progress, "the channel")
        return self._sources(place, raw)

    async def _starter(self, place: Place) -> dict[str, Any] | None:
        if not place.is_thread or place.parent is None:
            return None
        try:
            found = await self.http.get_message(int(place.parent), int(place.id))
        except discord.HTTPException:
            return None  # a thread not opened from a message, or the message is gone
        return dict(cast("Mapping[str, Any]", found))

    async def _forward(
        self, channel_id: str, after: int, before: int | None, progress: Progress | None,
        what: str,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = after
        while len(out) < MAX_MESSAGES:
            try:
                page = await self.http.logs_from(int(channel_id), PAGE, after=cursor)
            except discord.Forbidden:
                raise ReadRefused("I'm not allowed to read the message history there.") from None
            except discord.NotFound:
                raise ReadRefused("That channel doesn't exist, or I can't see it.") from None
            # Discord lists a page newest first.
            batch = sorted((dict(cast("Mapping[str, Any]", m)) for m in page),
                           key=lambda m: int(m["id"]))
            if before is not None:
                batch = [m for m in batch if int(m["id"]) < before]
            out.extend(batch)
            if len(page) < PAGE or not batch:
                break
            cursor = int(batch[-1]["id"])
            if progress is not None:
                await progress(f"Reading {what}… {len(out):,} messages so far")
        if len(out) >= MAX_MESSAGES:
            log.warning("summary read stopped at %d messages in %s", MAX_MESSAGES, channel_id)
        return out[:MAX_MESSAGES]

    def _sources(self, place: Place, raw: Sequence[Mapping[str, Any]]) -> list[SourceMessage]:
        out = []
        for m in raw:
            if int(m.get("type", 0)) not in READ_TYPES:
                continue
            names = {int(u["id"]): _speaker({"author": u, "member": u.get("member")})
                     for u in m.get("mentions") or ()}
            text = convert(str(m.get("content") or ""), bot_id=self.bot_id, users=names)
            files = tuple(str(a.get("filename") or "file") for a in m.get("attachments") or ())
            if not text and not files:
                continue
            channel = str(m.get("channel_id") or place.id)
            out.append(SourceMessage(
                id=str(m["id"]), author=_speaker(m), text=text,
                link=jump_url(place.guild, channel, str(m["id"])),
                at=snowflake_time(int(m["id"])), files=files,
            ))
        return out
