"""Slash commands: /ask, /reset, /model (admins), /usage, /summarize (adapters/discord/summary).
Each answers Discord within 3 s.

Cheap checks (access lists, rate) answer at once; everything else first defers, which shows
Discord's "is thinking…" state, then fills in the response.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from adapters.discord.interaction_port import InteractionPort, InteractionReply
from adapters.discord.markup import speaker_name
from adapters.discord.policy import Requester, requester_of, start_of_utc_day
from adapters.discord.port import NO_PINGS
from adapters.discord.routing import PLATFORM, dm_key, is_thread, thread_key
from core.types import Inbound, ThreadKey

if TYPE_CHECKING:
    from adapters.discord.client import ThreadwiseBot

log = logging.getLogger(__name__)

NOT_HERE = "I'm not available here."
ADMINS_ONLY = "Only server admins (Administrator or Manage Server) can change the model."


async def _say(interaction: discord.Interaction, text: str) -> None:
    """Fill in a deferred response (or answer at once if nothing was sent yet)."""
    if interaction.response.is_done():
        await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)


async def _not_saved(interaction: discord.Interaction, what: str, exc: Exception) -> None:
    """A choice the database would not take: say so (it was not applied either)."""
    log.warning("could not save %s: %s", what, exc)
    reason = getattr(exc, "user_reason", None) or "the bot's database did not answer"
    await _say(interaction, f"⚠️ I couldn't save {what}, so nothing changed: {reason}")


def _place_key(interaction: discord.Interaction) -> ThreadKey:
    """The conversation a command speaks about: the DM, the thread, or a new chain."""
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is None:
        return dm_key(channel_id)
    if is_thread(interaction.channel):
        return thread_key(interaction.guild_id, channel_id)
    return ThreadKey(PLATFORM, str(interaction.guild_id), str(channel_id), str(interaction.id))


def register_commands(bot: ThreadwiseBot) -> None:
    tree = bot.tree

    def requester(interaction: discord.Interaction) -> Requester:
        return requester_of(interaction.user, interaction.channel, bot.discord_settings)

    @tree.command(name="ask", description="Ask the assistant a question")
    @app_commands.describe(prompt="your question", image="an image or file to look at")
    async def ask(
        interaction: discord.Interaction, prompt: str, image: discord.Attachment | None = None
    ) -> None:
        who = requester(interaction)
        if not bot.policy.admitted(who):
            await _say(interaction, NOT_HERE)
            return
        too_fast = bot.policy.take_request(who)
        if too_fast is not None:
            await _say(interaction, too_fast)
            return
        deferred = await interaction.response.defer(thinking=True)
        reply = InteractionReply(interaction, bot.port,
                                 response_id=deferred.message_id if deferred else None)
        over = await bot.policy.over_quota(who)
        if over is not None:
            await _say(interaction, over)
            return
        key = _place_key(interaction)
        inbound = Inbound(
            key=key,
            message_id=str(interaction.id),
            author_id=str(interaction.user.id),
            author_name=speaker_name(interaction.user),
            text=prompt,
            files=(bot.attachments.add(image),) if image is not None else (),
            is_admin=who.is_admin,
        )
        port = InteractionPort(reply, bot.attachments)
        await bot.service_for((key.channel, *who.places)).handle(inbound, port)

    @tree.command(name="reset", description="Start a fresh conversation in this channel or thread")
    async def reset(interaction: discord.Interaction) -> None:
        if not bot.policy.admitted(requester(interaction)):
            await _say(interaction, NOT_HERE)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = _place_key(interaction)
        try:
            if key.root == str(interaction.id):  # plain channel: conversations are reply chains
                await bot.resets.mark(key.channel, interaction.id)
                text = "🧹 Fresh start: I won't continue conversations from before this point here."
            else:
                await bot.service.reset(key)
                where = "in this thread" if key.space != "dm" else "between us"
                text = f"🧹 Fresh start: I've set aside our earlier conversation {where}."
        except Exception as exc:
            await _not_saved(interaction, "the fresh start", exc)
            return
        await _say(interaction, text)

    @tree.command(name="model", description="Show or choose the model for this channel (admins)")
    @app_commands.describe(name="the model to use in this channel")
    async def model(interaction: discord.Interaction, name: str | None = None) -> None:
        who = requester(interaction)
        if not bot.policy.admitted(who):
            await _say(interaction, NOT_HERE)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if name is None:
            offered = ", ".join(f"`{m}`" for m in bot.models.offered)
            # What replies here use: in a thread, the parent channel's choice counts too.
            used = bot.models.effective(who.places)
            await _say(interaction, f"This channel uses `{used}`. Available: {offered}.")
            return
        if not who.is_admin:
            await _say(interaction, ADMINS_ONLY)
            return
        if name not in bot.models.offered:
            await _say(interaction, f"`{name}` isn't one of the configured models.")
            return
        try:
            await bot.models.choose(who.places, name)
        except Exception as exc:
            await _not_saved(interaction, "the model choice", exc)
            return
        await _say(interaction, f"✅ This channel now uses `{name}`.")

    @model.autocomplete("name")
    async def model_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=m, value=m) for m in bot.models.matching(current)]

    @tree.command(name="usage", description="Tokens you and this channel used today")
    async def usage(interaction: discord.Interaction) -> None:
        if not bot.policy.admitted(requester(interaction)):
            await _say(interaction, NOT_HERE)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        since = start_of_utc_day(time.time())
        mine = await bot.service.usage(since=since, user_id=str(interaction.user.id))
        here = await bot.service.usage(since=since, channel=str(interaction.channel_id))
        quota = bot.policy.quota(requester(interaction))
        limit = f" of your {quota:,} daily quota" if quota else ""
        await _say(
            interaction,
            f"📊 Today (UTC) you've used **{mine.total:,}** tokens{limit} "
            f"({mine.prompt_tokens:,} in, {mine.completion_tokens:,} out). "
            f"This channel: **{here.total:,}** tokens.",
        )

    if bot.summaries is not None:
        from adapters.discord.summary import register_summarize

        register_summarize(bot, bot.summaries)

    @tree.error
    async def on_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        log.error("slash command failed: %s", error, exc_info=error)
        with contextlib.suppress(discord.HTTPException):
            await _say(interaction, "⚠️ Sorry, that command failed. Please try again.")
