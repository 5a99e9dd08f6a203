"""The channel a message or command came from, even one discord.py has not cached.

discord.py knows threads only from gateway events (GUILD_CREATE, THREAD_CREATE, …). A
thread it never heard of (a private thread the bot was not a member of, one it missed
while disconnected) reaches us as a PartialMessageable with no type and no parent, which
would make a thread look like a plain channel: its history lost, and its parent's
allow-list and /model choice not applied. Such channels are fetched once and remembered.
"""

from __future__ import annotations

import logging
from typing import Protocol, TypeVar

import discord

from adapters.discord.port import Remembered

log = logging.getLogger(__name__)

Resolved = discord.abc.GuildChannel | discord.Thread


class Located(Protocol):
    """A channel, thread or DM, as far as routing looks at it."""

    @property
    def id(self) -> int: ...


C = TypeVar("C", bound=Located)


class ChannelResolver:
    def __init__(self) -> None:
        self._fetched: Remembered[Resolved] = Remembered()

    async def resolve(self, channel: C, guild: discord.Guild | None) -> C | Resolved:
        """The full channel or thread; `channel` itself when it is already one, is a DM,
        or cannot be fetched (then the caller treats it as before)."""
        if guild is None or not isinstance(channel, discord.PartialMessageable):
            return channel
        found = guild.get_channel_or_thread(channel.id) or self._fetched.get(str(channel.id))
        if found is not None:
            return found
        try:
            fetched = await guild.fetch_channel(channel.id)
        except (discord.HTTPException, discord.InvalidData) as exc:
            log.warning("could not look up channel %s: %s", channel.id, exc)
            return channel
        self._fetched.remember(str(channel.id), fetched)
        return fetched
