"""Composition of the Discord bot: `threadwise discord`, `--invite-url`, and `threadwise check`.

Entry points for the CLI:
- `await run_discord(settings)`: run until stopped.
- `await invite_url_for(settings)` / `invite_url(application_id)`: the OAuth2 URL to add the bot.
- `await check_discord(settings)`: list[CheckResult] for `threadwise check`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient

from adapters.discord.client import ThreadwiseBot, build_bot
from adapters.discord.endpoints import GatewayUnreachable, endpoints_overridden, reach_gateway
from adapters.discord.settings import DiscordSettings, load_discord_settings
from adapters.health import HealthServer
from bots.check import CheckResult
from bots.compose import Core, open_core
from bots.config import ConfigError, load_overrides, validated
from bots.logging_setup import quiet_voice_warnings
from bots.stop_signals import stop_on_signals
from core.settings import Settings

log = logging.getLogger(__name__)

# Like `threadwise slack`: docker-compose.yml's stop_grace_period (30 s) leaves room for it.
SHUTDOWN_GRACE_S = 20.0

MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)  # GATEWAY_MESSAGE_CONTENT(_LIMITED)
NO_TOKEN = (
    "DISCORD_TOKEN is not set: set DISCORD_TOKEN to the bot token from the Developer Portal "
    "(Bot → Token)"
)
INTENT_FIX = (
    "enable the Message Content Intent (Developer Portal → your app → Bot → "
    "Privileged Gateway Intents)"
)


def bot_permissions(*, auto_thread: bool) -> discord.Permissions:
    """The least the bot needs: read and answer, in channels and threads."""
    perms = discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        read_message_history=True,  # reply chains reference earlier messages
    )
    if auto_thread:
        perms.create_public_threads = True
    return perms


def invite_url(application_id: str, *, auto_thread: bool | None = None) -> str:
    """OAuth2 URL adding the bot with minimal permissions and its slash commands."""
    if auto_thread is None:
        auto_thread = _discord_settings().auto_thread
    return discord.utils.oauth_url(
        application_id,
        permissions=bot_permissions(auto_thread=auto_thread),
        scopes=("bot", "applications.commands"),
    )


def token_of(settings: Settings) -> str | None:
    """DISCORD_TOKEN, or None (a blank one is None already: core.settings)."""
    return settings.discord_token.get_secret_value() if settings.discord_token else None


def application_id_from_token(token: str) -> str | None:
    """A bot token starts with the bot's user id (= its application id) in base64."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=False).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if decoded.isdigit() else None


async def invite_url_for(settings: Settings) -> str:
    """The invite URL; the application id comes from DISCORD_APPLICATION_ID or the token.
    Raises ConfigError, one line the command line prints (exit 2), on any problem."""
    discord_settings = _discord_settings()
    app_id = discord_settings.application_id
    token = token_of(settings)
    if app_id is None and token is not None:
        app_id = application_id_from_token(token) or await _application_id(settings, token)
    if app_id is None:
        raise ConfigError(
            "DISCORD_TOKEN is not set: set it (or DISCORD_APPLICATION_ID) to build the invite URL"
        )
    return invite_url(app_id, auto_thread=discord_settings.auto_thread)


async def _application_id(settings: Settings, token: str) -> str:
    """Ask Discord, for a token that does not carry the id."""
    where = settings.discord_api_url or "discord.com"
    try:
        async with _discord_http(settings, token) as (http, _):
            return str((await http.application_info())["id"])
    except discord.LoginFailure:
        raise ConfigError("DISCORD_TOKEN was rejected by Discord (401)") from None
    except (discord.HTTPException, OSError, aiohttp.ClientError, TimeoutError) as exc:
        # The URL needs only the id: setting it is the way round an unreachable Discord.
        raise ConfigError(
            f"could not ask Discord ({where}) for the application id: "
            f"{exc or type(exc).__name__}; set DISCORD_APPLICATION_ID to build the invite URL"
        ) from None


def _discord_settings() -> DiscordSettings:
    """The DISCORD_* settings, or a ConfigError naming what is wrong."""
    return validated(load_discord_settings)


@contextlib.asynccontextmanager
async def _discord_http(
    settings: Settings, token: str
) -> AsyncIterator[tuple[HTTPClient, dict[str, Any]]]:
    """discord.py's own HTTP client, logged in (GET /users/@me); yields it and the bot user."""
    with endpoints_overridden(settings.discord_api_url, settings.discord_gateway_url):
        http = HTTPClient(asyncio.get_running_loop())
        try:
            me = await http.static_login(token)
            yield http, dict(me)
        finally:
            await http.close()


async def check_discord(settings: Settings) -> list[CheckResult]:
    """Log in with the token and read the application: who the bot is, and its intents."""
    token = token_of(settings)
    if token is None:
        return [CheckResult("discord", False, NO_TOKEN)]
    where = settings.discord_api_url or "discord.com"
    try:
        async with _discord_http(settings, token) as (http, me):
            app = await http.application_info()
    except discord.LoginFailure:
        return [CheckResult(f"discord bot ({where})", False, "the token was rejected (401)")]
    except (discord.HTTPException, OSError) as exc:
        return [CheckResult(f"discord bot ({where})", False, f"could not reach Discord: {exc}")]
    results = [CheckResult(f"discord bot ({where})", True,
                           f"logged in as {me['username']} (id {me['id']})")]
    content = int(app.get("flags") or 0) & MESSAGE_CONTENT_FLAGS
    detail = f"application {app['name']} (id {app['id']})"
    results.append(CheckResult(
        "discord message content intent", bool(content),
        f"{detail}: enabled" if content else f"{detail}: not enabled; {INTENT_FIX}",
    ))
    return results


@dataclass
class RunningDiscord:
    bot: ThreadwiseBot
    core: Core
    connection: asyncio.Task[None]
    health: HealthServer | None


@contextlib.asynccontextmanager
async def running_discord(
    settings: Settings,
    *,
    discord_settings: DiscordSettings | None = None,
    guild_ready_timeout: float = 2.0,
    health_host: str = "0.0.0.0",
    serve_health: bool = True,
) -> AsyncIterator[RunningDiscord]:
    """Log in, start the gateway connection, and stop everything on exit."""
    token = token_of(settings)
    if token is None:
        raise ConfigError(NO_TOKEN)
    if discord_settings is None:
        discord_settings = _discord_settings()
    overrides = load_overrides(settings)
    quiet_voice_warnings()  # discord.Client's start-up note about voice, which we never use
    async with open_core(settings, overrides) as core:
        bot = build_bot(
            settings=settings, discord_settings=discord_settings, service=core.service,
            tailored=core.services, overrides=overrides,
            guild_ready_timeout=guild_ready_timeout,
        )
        health = (
            HealthServer(ready=bot.accepting, metrics=core.metrics.render) if serve_health else None
        )
        with endpoints_overridden(settings.discord_api_url, settings.discord_gateway_url):
            try:
                if health is not None:
                    await health.start(health_host, settings.port)
                    log.info("Discord /healthz and /metrics on port %d", health.port)
                try:
                    await bot.login(token)
                except discord.LoginFailure:
                    raise ConfigError("DISCORD_TOKEN was rejected by Discord (401)") from None
                await _reach_gateway(bot, settings)
                connection = asyncio.create_task(bot.connect(), name="discord-gateway")
                # Replies a dead process (another shard, a crashed replica) left streaming.
                sweeper = asyncio.create_task(
                    core.service.run_orphan_sweeper(bot.port, platform="discord"),
                    name="discord-orphan-sweeper",
                )
                try:
                    yield RunningDiscord(bot, core, connection, health)
                finally:
                    sweeper.cancel()
                    await asyncio.gather(sweeper, return_exceptions=True)
                    await bot.close()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await connection
            finally:
                if not bot.is_closed():
                    await bot.close()
                if health is not None:
                    await health.stop()


async def _reach_gateway(bot: ThreadwiseBot, settings: Settings) -> None:
    try:
        await reach_gateway(bot.http)
    except GatewayUnreachable as exc:
        if settings.discord_gateway_url is None:
            raise
        raise GatewayUnreachable(f"{exc} (check DISCORD_GATEWAY_URL)") from None


async def run_discord(settings: Settings) -> None:
    """`threadwise discord`: run until SIGINT/SIGTERM, then finish the replies being
    written (up to SHUTDOWN_GRACE_S) and stop."""
    with stop_on_signals() as stop:
        async with running_discord(settings) as running:
            await _until_stopped(running, stop)


async def _until_stopped(running: RunningDiscord, stop: asyncio.Event) -> None:
    stopping = asyncio.create_task(stop.wait(), name="discord-stop-signal")
    try:
        await asyncio.wait({running.connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if running.connection.done():  # the gateway connection ended by itself
        try:
            running.connection.result()
        except discord.PrivilegedIntentsRequired:
            raise ConfigError(f"Discord refused the message content intent: {INTENT_FIX}") from None
        return
    log.info("stopping the Discord bot: finishing the replies being written")
    await running.bot.drain(SHUTDOWN_GRACE_S)
