"""Discord sharding: two real `threadwise discord` processes, one shard each, sharing one
PostgreSQL. Each server's messages reach (and are answered by) only its shard's
process; DMs belong to shard 0; commands are uploaded once."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.bot_processes import Fleet, clean_env, until_turns
from tests.fakes.discord_gateway import shard_for
from tests.fakes.discord_server import DiscordServer
from tests.fakes.log_capture import LogHygiene
from tests.fakes.model_server import FakeModelServer
from tests.pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)


def answered_once(server: DiscordServer, channel_id: str) -> bool:
    return len(server.bot_messages(channel_id)) == 1


@pytest.fixture
async def fleet(
    pg_url: str, discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> AsyncIterator[Fleet]:
    # Depends on what the processes talk to, so they are killed before those stop.
    async with Fleet(tmp_path, "discord", scan=log_hygiene.check_output) as running:
        yield running


def shard_env(
    server: DiscordServer, model: FakeModelServer, database_url: str, shard_ids: str
) -> dict[str, str]:
    return clean_env(
        MODEL_BASE_URL=model.base_url, MODEL_API_KEY="test-key", MODEL_MAX_RETRIES="0",
        DATABASE_URL=database_url, DISCORD_TOKEN=server.token,
        DISCORD_API_URL=server.api_url, DISCORD_GATEWAY_URL=server.gateway_url,
        DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS=shard_ids,
    )


async def test_each_shard_process_answers_only_its_own_servers(
    fleet: Fleet, discord_server: DiscordServer, model_server: FakeModelServer, pg_url: str
) -> None:
    first_shard = shard_for(discord_server.guild_id, 2)
    second_guild = discord_server.add_guild("Second server", shard=1 - first_shard,
                                            shard_count=2)
    lobby = discord_server.add_channel("lobby", guild_id=second_guild)

    shards = await fleet.start(
        shard_env(discord_server, model_server, pg_url, "0"),
        shard_env(discord_server, model_server, pg_url, "1"),
    )
    assert sorted(p["shard"] for p in discord_server.identify_payloads) == [[0, 2], [1, 2]]

    general = discord_server.channel_id("general")
    dm = discord_server.dm_channel_id("bob")
    asked = {
        general: await discord_server.user_says(general, "hello from the first server"),
        lobby: await discord_server.user_says(lobby, "hello from the second server"),
        dm: await discord_server.user_says(dm, "hello in private", author="bob",
                                           mentions_bot=False),
    }
    await until_turns(shards, answered=3)

    for channel, message_id in asked.items():
        await discord_server.until(functools.partial(answered_once, discord_server, channel))
        [reply] = discord_server.bot_messages(channel)
        assert reply["message_reference"]["message_id"] == message_id
        assert reply["content"].startswith("echo: ")
    # Shard 0 has the DM and its server; shard 1 only its server. No message was seen twice.
    counts = [await bot.turns() for bot in shards]
    assert [c.get("answered") for c in counts] == [2.0, 1.0]
    assert all("duplicate" not in c for c in counts)
    assert len(model_server.requests) == 3
    # One set of global commands, uploaded by shard 0's process only.
    assert len(discord_server.command_syncs) == 1


@pytest.mark.parametrize(
    ("shard_ids", "shard_count", "named"),
    [("1", "", "DISCORD_SHARD_COUNT"), ("0,2", "2", "DISCORD_SHARD_IDS")],
)
async def test_bad_shard_settings_exit_2_with_one_line(
    tmp_path: Path, shard_ids: str, shard_count: str, named: str
) -> None:
    env = clean_env(MODEL_API_KEY="test-key", DISCORD_TOKEN="test-discord-token",
                    DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
                    DISCORD_SHARD_IDS=shard_ids, DISCORD_SHARD_COUNT=shard_count)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "discord", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 2, text
    assert text.count("\n") == 1 and named in text and "Traceback" not in text
