"""`threadwise summarize <link> [--post] [--hours N]`: a summary on stdout, progress on stderr.

The link is a Slack message or thread permalink, or a Discord message, thread or channel
link. Reading uses the configured bot token (SLACK_BOT_TOKEN / DISCORD_TOKEN), so the
bot must be able to read that conversation; no gateway or event connection is opened.
`--post` also puts the summary in the thread (or, for a time range, in the channel).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import discord
from discord.http import HTTPClient, handle_message_parameters
from slack_sdk.errors import SlackApiError

from adapters.discord.endpoints import endpoints_overridden
from adapters.discord.history import DiscordHistory
from adapters.discord.history import ReadRefused as DiscordRefused
from adapters.discord.links import DiscordLink, parse_discord_link
from adapters.discord.port import MAX_CHARS as DISCORD_MAX_CHARS
from adapters.discord.port import NO_PINGS
from adapters.discord.summary import summary_text as discord_summary_text
from adapters.slack.bot import SlackStartupError, web_client
from adapters.slack.history import ReadRefused as SlackRefused
from adapters.slack.history import (
    SlackHistory,
    SlackReadSettings,
    load_read_settings,
    refusal_for,
)
from adapters.slack.links import SlackLink, parse_slack_link
from adapters.slack.lost_posts import LostPosts
from adapters.slack.rate import SlackRateGate
from adapters.slack.summary import SlackSummaries, SummaryRequest
from adapters.slack.users import DisplayNames
from bots.compose import open_core
from bots.config import ConfigError, validated
from core.model.types import ModelError
from core.settings import Settings
from core.splitting import split_all
from core.summary_service import MAX_HOURS, ProgressBoard, SummaryService

CLI_USER = "cli"  # whom the CLI's token usage is recorded against
LINK_FORMATS = ("a Slack permalink (https://WORKSPACE.slack.com/archives/C…/p…) or a Discord "
                "link (https://discord.com/channels/GUILD/CHANNEL[/MESSAGE])")


async def run_summarize(settings: Settings, link: str, *, post: bool, hours: float | None
                        ) -> int:
    """Print the summary; 0 when it was made, 1 when Slack, Discord or the model refused."""
    slack, chat = parse_slack_link(link), parse_discord_link(link)
    if slack is None and chat is None:
        raise ConfigError(f"not a thread or message link: expected {LINK_FORMATS}")
    if hours is not None and not 0 < hours <= MAX_HOURS:
        raise ConfigError(f"--hours must be between 1 and {MAX_HOURS}")
    if slack is not None and settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set: a Slack link is read with the bot token")
    if chat is not None and settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN is not set: a Discord link is read with the bot token")
    read = validated(load_read_settings) if slack is not None else None  # SLACK_HISTORY_*
    async with open_core(settings) as core:
        service = SummaryService.for_service(core.service)
        board = ProgressBoard(_to_stderr, min_gap_s=0.5)
        try:
            if slack is not None:
                assert read is not None
                text = await _slack(settings, service, slack, read, post=post, hours=hours,
                                    progress=board)
            else:
                assert chat is not None
                text = await _discord(settings, service, chat, post=post, hours=hours,
                                      progress=board)
        except (SlackRefused, DiscordRefused, ModelError) as exc:
            await board.close()
            print(f"threadwise: {exc}", file=sys.stderr)
            return 1
        await board.close()
    print(text)
    return 0


async def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _slack(
    settings: Settings, service: SummaryService, link: SlackLink, read: SlackReadSettings, *,
    post: bool, hours: float | None, progress: ProgressBoard,
) -> str:
    try:
        client = web_client(settings)
    except SlackStartupError as exc:
        raise ConfigError(str(exc)) from None
    try:
        me = await client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(f"Slack rejected SLACK_BOT_TOKEN: {exc.response.get('error')}"
                          ) from None
    team = str(me.get("team_id") or "")
    gate = SlackRateGate(1.0, read.rate_overrides())
    history = SlackHistory(client, gate, DisplayNames(client, gate, team=team), team=team,
                           workspace_url=str(me.get("url") or ""), read=read)
    # --post: a post whose answer is lost is looked for, not sent twice.
    lost = LostPosts(client, gate)
    lost.bot_id = str(me.get("bot_id") or "") or None
    summaries = SlackSummaries(client=client, gate=gate, history=history, service=service,
                               lost=lost, posts=web_client(settings, resend_lost=False))
    req = SummaryRequest(team, link.channel, CLI_USER, None if hours else link.root,
                         hours or 24.0)
    try:
        refusal = await summaries.access(replace(req, user=""))  # no requester: the bot's view
    except SlackApiError as exc:
        raise refusal_for(exc) from None
    if refusal is not None:
        raise SlackRefused(refusal)
    text = await summaries.summary_text(req, progress)
    if post:
        await summaries.publish(req, text)
        await _to_stderr("Posted the summary in Slack.")
    return text


@asynccontextmanager
async def _discord_http(settings: Settings) -> AsyncIterator[tuple[HTTPClient, int]]:
    """discord.py's REST client, logged in with the bot token (no gateway)."""
    assert settings.discord_token is not None
    with endpoints_overridden(settings.discord_api_url, None):
        http = HTTPClient(asyncio.get_running_loop())
        try:
            try:
                me = await http.static_login(settings.discord_token.get_secret_value())
            except discord.LoginFailure:
                raise ConfigError("DISCORD_TOKEN was rejected by Discord (401)") from None
            yield http, int(me["id"])
        finally:
            await http.close()


async def _discord(
    settings: Settings, service: SummaryService, link: DiscordLink, *, post: bool,
    hours: float | None, progress: ProgressBoard,
) -> str:
    async with _discord_http(settings) as (http, bot_id):
        history = DiscordHistory(http, bot_id=bot_id)
        place = await history.place(link.channel)
        from_message = None
        if link.message is not None and not place.is_thread and hours is None:
            try:  # a message a thread was opened from: summarize that thread
                place = await history.place(link.message)
            except DiscordRefused:
                from_message = int(link.message)
        text = await discord_summary_text(
            service, history, place, hours=hours, before=None, user_id=CLI_USER,
            progress=progress, from_message=from_message,
        )
        if post:
            for part in split_all(text, DISCORD_MAX_CHARS):
                params = handle_message_parameters(content=part, allowed_mentions=NO_PINGS)
                await http.send_message(int(place.id), params=params)
            await _to_stderr("Posted the summary in Discord.")
        return text
