"""A busy bot: many channels asking at once stay inside Discord's global request limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.discord_harness import start_bot
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_server import FakeModelServer

CHANNELS = 60


async def _ask_everywhere(server: DiscordServer, channels: list[str], answer: str) -> None:
    """Someone asks in every channel at once; every reply arrives whole."""
    await asyncio.gather(*(server.user_says(c, "a story, please") for c in channels))
    await server.until(
        lambda: all([m["content"] for m in server.bot_messages(c)] == [answer]
                    for c in channels),
        wait_s=90,
    )


def _streamed_without_429s(server: DiscordServer) -> None:
    assert server.global_rate_limits == []
    edits = [w for w in server.writes if w.kind == "edit" and w.status == 200]
    assert len(edits) >= CHANNELS, "the replies streamed in (the load was real)"
    assert server.rate_limits == []


async def test_sixty_channels_streaming_at_once_never_get_a_global_429(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # Each channel paces itself at one write a second, so sixty replies streaming together
    # want 60+ requests a second (typing included): more than the 50 Discord allows a bot.
    # Every global 429 counts toward Discord's ban of 10,000 invalid requests in 10 minutes.
    server = discord_server
    channels = [server.add_channel(f"room-{n}") for n in range(CHANNELS)]
    answer = " ".join(f"word{i}" for i in range(30))
    for _ in channels:
        model_server.reply(answer, tokens_per_s=8)  # a few seconds of streaming each
    async with start_bot(server, model_server, tmp_path, DISCORD_USER_RATE_PER_MIN=0):
        await _ask_everywhere(server, channels, answer)
    _streamed_without_429s(server)


async def test_two_shard_processes_share_the_global_limit(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # The limit is the bot's, not each process's: two shard processes streaming in thirty
    # channels each would want about 60 requests a second together.
    server = discord_server
    guilds = [server.add_guild(f"server {n}", shard=n, shard_count=2) for n in range(2)]
    channels = [server.add_channel(f"room-{n}", guild_id=guilds[n % 2])
                for n in range(CHANNELS)]
    answer = " ".join(f"word{i}" for i in range(30))
    for _ in channels:
        model_server.reply(answer, tokens_per_s=8)
    shard = {"DISCORD_USER_RATE_PER_MIN": 0, "DISCORD_SHARD_COUNT": 2}
    async with (
        start_bot(server, model_server, tmp_path, DISCORD_SHARD_IDS="0", **shard),
        start_bot(server, model_server, tmp_path, DISCORD_SHARD_IDS="1", **shard),
    ):
        await _ask_everywhere(server, channels, answer)
    _streamed_without_429s(server)
    assert {p["shard"][0] for p in server.identify_payloads} == {0, 1}
