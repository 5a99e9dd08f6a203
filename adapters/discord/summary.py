"""`/summarize [hours] [private]` on Discord.

In a thread it summarizes the whole thread (with the message it was opened from); in a
channel, the last `hours` (24 by default). The answer is the command's own response,
so it lands in the thread or channel it was asked in; `private` makes it ephemeral.
Only messages from before the command are read, and only where both the requester and
the bot may read the message history.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from adapters.discord.history import DiscordHistory, Place, ReadRefused
from adapters.discord.interaction_port import InteractionReply
from adapters.discord.policy import requester_of
from adapters.discord.port import MAX_CHARS, NO_PINGS
from core.model.types import ModelError
from core.splitting import split_all
from core.summarize import Progress
from core.summary_service import MAX_HOURS, ProgressBoard, SummaryService, hours_label, render
from core.types import ThreadKey

if TYPE_CHECKING:
    from adapters.discord.client import ThreadwiseBot

log = logging.getLogger(__name__)

DEFAULT_HOURS = 24
PROGRESS_GAP_S = 1.5  # interaction edits share a 5-per-5-s bucket with the follow-ups
NOT_HERE = "I'm not available here."
NO_HISTORY = "You need the Read Message History permission here to summarize it."
BOT_NO_HISTORY = ("I can't read the message history here; ask an admin to give me the Read "
                  "Message History permission in this channel.")


async def _refuse(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)


async def summary_text(
    service: SummaryService, history: DiscordHistory, place: Place, *, hours: float | None,
    before: int | None, user_id: str, progress: Progress, from_message: int | None = None,
) -> str:
    """Read the place and summarize it; the rendered Markdown (or why there is nothing).

    A thread is read whole, a channel for its last `hours`, or from `from_message` on.
    """
    if from_message is not None and hours is None:
        messages = await history.after(place, from_message, progress=progress)
        heading = "🧵 **Summary from the linked message on**"
        title = f"Discord #{place.name}, from one message on"
    elif place.is_thread and hours is None:
        messages = await history.thread(place, before=before, progress=progress)
        heading, title = "🧵 **Summary of this thread**", f"Discord thread {place.name}"
    else:
        span = hours_label(hours or DEFAULT_HOURS)
        since = time.time() - (hours or DEFAULT_HOURS) * 3600
        messages = await history.since(place, since, before=before, progress=progress)
        heading = f"🧵 **Summary of the last {span} here**"
        title = f"Discord #{place.name}, last {span}"
    if not messages:
        return "There's nothing to summarize here yet."
    messages = await service.with_image_notes("discord", place.id, messages)
    key = ThreadKey("discord", place.guild or "dm", place.id, place.id)
    summary = await service.summarize(messages, title=title, key=key, user_id=user_id,
                                      progress=progress)
    return render(summary, heading=heading)


def register_summarize(bot: ThreadwiseBot, service: SummaryService) -> None:
    @bot.tree.command(name="summarize",
                      description="Summarize this thread, or this channel's recent messages")
    @app_commands.describe(
        hours=f"in a channel: how many hours back (default {DEFAULT_HOURS})",
        private="only you see the summary",
    )
    async def summarize(
        interaction: discord.Interaction,
        hours: app_commands.Range[int, 1, MAX_HOURS] | None = None,
        private: bool = False,
    ) -> None:
        who = requester_of(interaction.user, interaction.channel, bot.discord_settings)
        if not bot.policy.admitted(who):
            await _refuse(interaction, NOT_HERE)
            return
        if not interaction.permissions.read_message_history:
            await _refuse(interaction, NO_HISTORY)
            return
        if not interaction.app_permissions.read_message_history:
            await _refuse(interaction, BOT_NO_HISTORY)
            return
        too_fast = bot.policy.take_request(who)
        if too_fast is not None:
            await _refuse(interaction, too_fast)
            return
        deferred = await interaction.response.defer(ephemeral=private, thinking=True)
        # A long summary may outlive the interaction token; the reply then moves on.
        reply = InteractionReply(interaction, bot.port, ephemeral=private,
                                 response_id=deferred.message_id if deferred else None)
        over = await bot.policy.over_quota(who)
        if over is not None:
            await reply.show(over)
            return
        me = bot.user
        history = DiscordHistory(bot.http, bot_id=me.id if me is not None else 0)

        async def show_progress(text: str) -> None:
            await reply.show(f"⏳ {text}")

        board = ProgressBoard(show_progress, min_gap_s=PROGRESS_GAP_S)
        try:
            place = await history.place(str(interaction.channel_id))
            try:
                text = await summary_text(
                    service, history, place, hours=hours, before=interaction.id,
                    user_id=str(interaction.user.id), progress=board,
                )
            finally:
                await board.close()
            parts = split_all(text, MAX_CHARS)
            await reply.show(parts[0])
            for part in parts[1:]:
                await reply.add(part)
        except (ReadRefused, ModelError) as exc:
            await _fail(reply, str(exc))
        except Exception as exc:
            log.exception("summary failed in %s", interaction.channel_id)
            await _fail(reply, type(exc).__name__)


async def _fail(reply: InteractionReply, reason: str) -> None:
    with contextlib.suppress(discord.HTTPException):
        await reply.show(f"⚠️ Sorry, I couldn't summarize this: {reason}")
