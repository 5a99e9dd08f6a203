"""Run the real Discord bot composition (bots.discord_bot) against the emulator and fake model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord

from adapters.discord.endpoints import endpoints_overridden
from adapters.discord.settings import load_discord_settings
from bots.discord_bot import RunningDiscord, running_discord
from core.settings import Settings
from tests.fakes.discord_server import DiscordServer
from tests.fakes.discord_state import InteractionRecord
from tests.fakes.known_secrets import MODEL_API_KEY
from tests.fakes.model_server import FakeModelServer

DISCORD_NAMES = (
    "DISCORD_BLOCKED_CHANNELS", "DISCORD_BLOCKED_ROLES", "DISCORD_BLOCKED_USERS",
    "DISCORD_ADMIN_USERS", "DISCORD_ALLOW_DMS", "DISCORD_AUTO_THREAD",
    "DISCORD_USER_RATE_PER_MIN", "DISCORD_DAILY_TOKEN_QUOTA", "DISCORD_MODELS",
    "DISCORD_APPLICATION_ID", "DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS",
)


def bot_settings(
    server: DiscordServer, model: FakeModelServer, db: Path, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "MODEL_BASE_URL": model.base_url,
        "MODEL_API_KEY": MODEL_API_KEY,
        "MODEL_MAX_RETRIES": 0,
        "DATABASE_URL": f"sqlite:///{db}",
        "DISCORD_TOKEN": server.token,
        "DISCORD_API_URL": server.api_url,
        "DISCORD_GATEWAY_URL": server.gateway_url,
        "PORT": 0,
    }
    values.update(extra)
    values["_env_file"] = None
    return Settings(**values)


@asynccontextmanager
async def start_bot(
    server: DiscordServer, model: FakeModelServer, tmp_path: Path, **extra: Any
) -> AsyncIterator[RunningDiscord]:
    """The bot, logged in and ready. DISCORD_* extras go to the Discord-only settings."""
    discord_only = {k: v for k, v in extra.items() if k in DISCORD_NAMES}
    core_only = {k: v for k, v in extra.items() if k not in DISCORD_NAMES}
    settings = bot_settings(server, model, tmp_path / "threadwise.db", **core_only)
    discord_settings = load_discord_settings(_env_file=None, **discord_only)
    async with running_discord(
        settings, discord_settings=discord_settings, guild_ready_timeout=0.05,
        health_host="127.0.0.1",
    ) as running:
        await asyncio.wait_for(running.bot.wait_until_ready(), 10)
        yield running


class RecordingClient(discord.Client):
    """A plain discord.py client that keeps every message it receives."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.received: list[discord.Message] = []

    async def on_message(self, message: discord.Message) -> None:
        self.received.append(message)

    def received_id(self, message_id: str) -> discord.Message:
        return next(m for m in self.received if str(m.id) == message_id)


@asynccontextmanager
async def connected_client(server: DiscordServer) -> AsyncIterator[RecordingClient]:
    """An unmodified discord.py client logged in to the emulator and ready."""
    client = RecordingClient()
    with endpoints_overridden(server.api_url, server.gateway_url):
        async with client:
            await client.login(server.token)
            connection = asyncio.create_task(client.connect())
            try:
                await asyncio.wait_for(client.wait_until_ready(), 10)
                yield client
            finally:
                await client.close()
                await asyncio.gather(connection, return_exceptions=True)


# --- what tests read -----------------------------------------------------------------

def replies_to(server: DiscordServer, message_id: str) -> list[dict[str, Any]]:
    return [
        m for m in server.bot_messages(server.message(message_id)["channel_id"])
        if m.get("message_reference", {}).get("message_id") == message_id
    ]


async def answer_to(server: DiscordServer, message_id: str, text: str) -> dict[str, Any]:
    """Wait until the bot's reply to message_id shows exactly `text`; return that message."""
    await server.until(lambda: any(m["content"] == text for m in replies_to(server, message_id)))
    return next(m for m in replies_to(server, message_id) if m["content"] == text)


async def response_text(server: DiscordServer, record: InteractionRecord) -> str:
    """Wait until a slash command's deferred response got content; return it."""
    def filled() -> bool:
        shown = server.interaction_messages(record)
        return bool(shown) and bool(shown[0]["content"])

    await server.until(filled)
    return str(server.interaction_messages(record)[0]["content"])


async def usage_reaches(
    running: RunningDiscord, total: int, *, user_id: str | None = None,
    channel: str | None = None,
) -> None:
    """Wait until recorded usage reaches total (a turn records it just after its last write)."""
    for _ in range(250):
        usage = await running.core.service.usage(since=0, user_id=user_id, channel=channel)
        if usage.total >= total:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"usage never reached {total} tokens")
