"""Which conversation a Discord message belongs to, and whether the bot should answer it.

- DMs: the DM channel is one conversation; replying to an earlier message forks from it.
- Threads: the thread is the conversation. The bot answers there when mentioned, when
  someone replies to it, and to everything in a thread it started.
- Channels: a conversation is a reply chain rooted at the message that first mentioned the
  bot. Replying to any message of a known chain continues it from that point (replying to an
  earlier message forks a branch that sees history only up to there).

"Mentioned" is @bot or @ the role Discord made for the bot. A reply to a message the
conversation does not hold (someone else's) brings that message along: quoted, with its
attachments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import discord

from adapters.discord.channels import Located
from adapters.discord.markup import mentions_bot, quoted, readable_text, speaker_name
from adapters.discord.models import ChannelResets
from core.types import ThreadKey

PLATFORM = "discord"
ANSWERABLE = (discord.MessageType.default, discord.MessageType.reply)
THREAD_TYPES = (
    discord.ChannelType.public_thread,
    discord.ChannelType.private_thread,
    discord.ChannelType.news_thread,
)


class KeyLookup(Protocol):
    async def resolve_key(
        self, platform: str, channel: str, platform_id: str
    ) -> ThreadKey | None: ...


@dataclass(frozen=True, slots=True)
class Conversation:
    key: ThreadKey
    reply_to: str | None  # the message replied to (a branch point); None = the tip
    text: str
    new: bool  # a fresh conversation in a plain channel (auto-thread may open a thread)
    # Attachments of a replied-to message the conversation does not hold (e.g. someone
    # else's photo): "@bot what's in this picture?" is about them.
    quoted_files: tuple[discord.Attachment, ...] = ()


def is_thread(channel: object) -> bool:
    return isinstance(channel, discord.Thread) or getattr(channel, "type", None) in THREAD_TYPES


def dm_key(channel_id: int) -> ThreadKey:
    return ThreadKey(PLATFORM, "dm", str(channel_id), str(channel_id))


def thread_key(guild_id: int, thread_id: int) -> ThreadKey:
    return ThreadKey(PLATFORM, str(guild_id), str(thread_id), str(thread_id))


class ConversationRouter:
    def __init__(self, lookup: KeyLookup, resets: ChannelResets) -> None:
        self._lookup = lookup
        self._resets = resets

    async def route(
        self, message: discord.Message, bot_id: int, channel: Located
    ) -> Conversation | None:
        """The conversation to answer in, or None when the message is not for the bot.

        `channel` is where it was said, resolved (message.channel may be a bare
        PartialMessageable for a thread discord.py has not cached)."""
        if message.author.bot or message.webhook_id is not None:
            return None  # other bots, our own posts, and webhooks are never answered
        if message.type not in ANSWERABLE:
            return None
        mentioned = mentions_bot(message, bot_id)
        ref = message.reference
        reply_to = None
        if ref is not None and ref.message_id is not None and ref.channel_id == channel.id:
            reply_to = str(ref.message_id)
        replied = ref.resolved if ref is not None else None
        replied_msg = replied if isinstance(replied, discord.Message) else None
        to_bot = replied_msg is not None and replied_msg.author.id == bot_id
        text = readable_text(message, bot_id)

        if message.guild is None:
            return Conversation(dm_key(channel.id), reply_to, text, new=False)
        if is_thread(channel):
            owned = getattr(channel, "owner_id", None) == bot_id
            if not (mentioned or to_bot or owned):
                return None
            key = thread_key(message.guild.id, channel.id)
            if replied_msg is not None and reply_to is not None and not to_bot and (
                await self._lookup.resolve_key(PLATFORM, str(channel.id), reply_to) is None
            ):
                # A message the thread's conversation does not hold (someone else's).
                return self._quoting(replied_msg, bot_id, key, reply_to, text, new=False)
            return Conversation(key, reply_to, text, False)

        if reply_to is not None:
            found = await self._lookup.resolve_key(PLATFORM, str(channel.id), reply_to)
            if found is not None and not self._resets.is_stale(str(channel.id), found.root):
                if mentioned or to_bot:
                    return Conversation(found, reply_to, text, new=False)
                return None  # people replying to each other inside a chain
        if not (mentioned or to_bot):
            return None
        key = ThreadKey(PLATFORM, str(message.guild.id), str(channel.id), str(message.id))
        if replied_msg is not None:
            # A chain we do not know (someone else's message, or from before a /reset).
            return self._quoting(replied_msg, bot_id, key, None, text, new=True)
        return Conversation(key, None, text, new=True)

    @staticmethod
    def _quoting(
        replied: discord.Message, bot_id: int, key: ThreadKey, reply_to: str | None, text: str,
        *, new: bool,
    ) -> Conversation:
        """Give the model the message being replied to: its text, and its attachments."""
        quote = quoted(speaker_name(replied.author), readable_text(replied, bot_id))
        return Conversation(key, reply_to, quote + "\n" + text, new,
                            tuple(replied.attachments))
