"""A slash command's answer: the deferred response, then follow-up messages.

An interaction token works for 15 minutes. An answer still being written after that (a
slow model, a long summary) carries on through the channel: the same messages are
edited there and new parts are posted there, so the answer still arrives instead of
"is thinking…" staying forever. Ephemeral answers cannot move (the channel would show
them to everyone); they end with the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import discord

from adapters.discord.port import (
    NO_PINGS,
    AttachmentIndex,
    DiscordPort,
    Remembered,
    channel_limits,
    with_rate_limit_retry,
)
from core.ports import WriteLimits
from core.types import FileRef, ThreadKey

log = logging.getLogger(__name__)

M = TypeVar("M")  # what a token write returns (a message)

# Discord's tokens last 15 minutes; we stop using one a minute early so that no write
# races the expiry (tests shorten this, and the emulator's token lifetime with it).
TOKEN_USABLE_S = 14 * 60
INVALID_WEBHOOK_TOKEN = 50027  # what Discord answers (401) once a token expired
UNKNOWN_WEBHOOK = 10015


def token_dead(exc: discord.HTTPException) -> bool:
    """Whether Discord refused a write because the interaction token no longer works."""
    return exc.status == 401 or exc.code in (INVALID_WEBHOOK_TOKEN, UNKNOWN_WEBHOOK)


class InteractionReply:
    """Writes one interaction's answer, through its token while that lasts, then through
    the channel the command was used in."""

    def __init__(
        self, interaction: discord.Interaction, channel: DiscordPort, *,
        response_id: int | None, ephemeral: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interaction = interaction
        self._channel = channel
        self._response_id = str(response_id) if response_id is not None else None
        self._ephemeral = ephemeral
        self._clock = clock
        self._deferred_at = clock()  # build this right after deferring
        self._expired = False
        place = str(interaction.channel_id)
        guild = str(interaction.guild_id) if interaction.guild_id is not None else "dm"
        self.key = ThreadKey("discord", guild, place, place)

    @property
    def in_channel(self) -> bool:
        """True once writes go through the channel (the token is spent, the answer public)."""
        if not self._expired and self._clock() - self._deferred_at >= TOKEN_USABLE_S:
            log.info("interaction %s: token nearly expired", self._interaction.id)
            self._expired = True
        return self._expired and not self._ephemeral

    def limits(self) -> WriteLimits:
        """The write budget in use: the token's own, then the channel's (shared with
        conversations there)."""
        if self.in_channel:
            return self._channel.limits(self.key)
        return channel_limits(f"discord:interaction:{self._interaction.id}")

    async def show(self, text: str, *, nonce: str | None = None) -> str:
        """Make `text` the command's response (first: in place of "is thinking…").
        `nonce`: kept by a post in the channel (see ChatPort.post)."""
        interaction = self._interaction
        original = await self._by_token(lambda: interaction.edit_original_response(
            content=text, allowed_mentions=NO_PINGS
        ))
        if original is not None:
            self._response_id = str(original.id)
            return self._response_id
        if self._response_id is not None:
            try:
                await self._channel.edit(self.key, self._response_id, text)
                return self._response_id
            except discord.HTTPException as exc:
                log.warning("could not edit response %s in the channel (%s); posting anew",
                            self._response_id, exc)
        self._response_id = await self._channel.post(self.key, text, nonce=nonce)
        return self._response_id

    async def add(self, text: str, *, nonce: str | None = None) -> str:
        """A further message after the response; its id."""
        interaction = self._interaction
        followup = await self._by_token(lambda: interaction.followup.send(
            text, ephemeral=self._ephemeral, allowed_mentions=NO_PINGS, wait=True
        ))
        if followup is not None:
            return str(followup.id)
        return await self._channel.post(
            self.key, text, reply_to=self._response_id, nonce=nonce
        )

    async def edit(self, message_id: str, text: str) -> None:
        """Change the response or a further message."""
        if message_id == self._response_id:
            await self.show(text)
            return
        interaction = self._interaction
        edited = await self._by_token(lambda: interaction.followup.edit_message(
            int(message_id), content=text, allowed_mentions=NO_PINGS
        ))
        if edited is None:
            await self._channel.edit(self.key, message_id, text)

    async def _by_token(self, write: Callable[[], Awaitable[M]]) -> M | None:
        """The write through the interaction token; None when the answer goes through
        the channel instead (the token is spent, now or before)."""
        if self.in_channel:
            return None
        try:
            return await with_rate_limit_retry(write)
        except discord.HTTPException as exc:
            if not self._moved(exc):
                raise
            return None

    def _moved(self, exc: discord.HTTPException) -> bool:
        """After a failed token write: whether to redo it through the channel."""
        if not token_dead(exc):
            return False
        log.warning("interaction %s: the token no longer works (%s); continuing in the channel",
                    self._interaction.id, exc)
        self._expired = True
        return not self._ephemeral


class InteractionPort:
    """The ChatPort for /ask: the first post fills the deferred ("thinking…") response;
    later parts are follow-ups."""

    def __init__(self, reply: InteractionReply, attachments: AttachmentIndex) -> None:
        self._reply = reply
        self.attachments = attachments
        self._filled = False
        self._shown: Remembered[str] = Remembered(64)

    def limits(self, key: ThreadKey) -> WriteLimits:
        return self._reply.limits()

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        if not self._filled:
            message_id = await self._reply.show(markdown, nonce=nonce)
            self._filled = True
        else:
            message_id = await self._reply.add(markdown, nonce=nonce)
        self._shown.remember(message_id, markdown)
        return message_id

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self._shown.get(message_id) == markdown:
            return
        await self._reply.edit(message_id, markdown)
        self._shown.remember(message_id, markdown)

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        await self.edit(key, message_id, markdown)

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        """The deferred response already shows Discord's own "is thinking…" state."""

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        return await self.attachments.read(ref, max_bytes=max_bytes)
