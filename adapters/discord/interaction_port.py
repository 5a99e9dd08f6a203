"""A ChatPort for a slash command's answer: the deferred response, then follow-up messages."""

from __future__ import annotations

import discord

from adapters.discord.port import (
    NO_PINGS,
    AttachmentIndex,
    Remembered,
    channel_limits,
    with_rate_limit_retry,
)
from core.ports import WriteLimits
from core.types import FileRef, ThreadKey


class InteractionPort:
    """The first post fills the deferred ("thinking…") response; later parts are follow-ups.

    Interaction webhooks have their own rate budget, separate from the channel's.
    """

    def __init__(self, interaction: discord.Interaction, attachments: AttachmentIndex) -> None:
        self._interaction = interaction
        self.attachments = attachments
        self._original_id: str | None = None
        self._shown: Remembered[str] = Remembered(64)

    def limits(self, key: ThreadKey) -> WriteLimits:
        return channel_limits(f"discord:interaction:{self._interaction.id}")

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False
    ) -> str:
        interaction = self._interaction
        if self._original_id is None:
            original = await with_rate_limit_retry(
                lambda: interaction.edit_original_response(
                    content=markdown, allowed_mentions=NO_PINGS
                )
            )
            self._original_id = str(original.id)
            self._shown.remember(self._original_id, markdown)
            return self._original_id
        followup = await with_rate_limit_retry(
            lambda: interaction.followup.send(markdown, allowed_mentions=NO_PINGS, wait=True)
        )
        self._shown.remember(str(followup.id), markdown)
        return str(followup.id)

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self._shown.get(message_id) == markdown:
            return
        interaction = self._interaction
        if message_id == self._original_id:
            await with_rate_limit_retry(
                lambda: interaction.edit_original_response(
                    content=markdown, allowed_mentions=NO_PINGS
                )
            )
        else:
            await with_rate_limit_retry(
                lambda: interaction.followup.edit_message(
                    int(message_id), content=markdown, allowed_mentions=NO_PINGS
                )
            )
        self._shown.remember(message_id, markdown)

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        await self.edit(key, message_id, markdown)

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        """The deferred response already shows Discord's own "is thinking…" state."""

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        return await self.attachments.read(ref, max_bytes=max_bytes)
