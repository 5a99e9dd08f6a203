"""The Discord emulator enforces what Discord enforces, as seen by unmodified discord.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord.endpoints import endpoints_overridden
from tests.fakes.discord_harness import connected_client
from tests.fakes.discord_server import DiscordServer, Upload


async def test_content_over_2000_characters_is_rejected_with_50035(
    discord_server: DiscordServer,
) -> None:
    async with connected_client(discord_server) as client:
        channel = client.get_partial_messageable(int(discord_server.channel_id()))
        with pytest.raises(discord.HTTPException) as rejected:
            await channel.send("x" * 2001)
        assert rejected.value.status == 400
        assert rejected.value.code == 50035
        await channel.send("x" * 2000)
    assert [len(m["content"]) for m in discord_server.bot_messages(discord_server.channel_id())] \
        == [2000]


async def test_posts_and_edits_share_a_bucket_and_429s_are_counted(
    discord_server: DiscordServer,
) -> None:
    discord_server.set_write_limit(5, 0.5)
    async with connected_client(discord_server) as client:
        channel = client.get_partial_messageable(int(discord_server.channel_id()))
        first = await channel.send("one")
        for n in range(4):
            await first.edit(content=f"edit {n}")
        # The 6th write in the window gets a 429 with Via; discord.py waits and retries.
        second = await channel.send("two")
    assert discord_server.message(str(second.id))["content"] == "two"
    assert discord_server.message(str(first.id))["content"] == "edit 3"
    # discord.py may wait pre-emptively once it sees remaining=0, so 429s are 0 or 1 here;
    # what matters is that every write landed and the bucket counted posts and edits together.
    assert len([w for w in discord_server.writes if w.status == 200]) == 6
    assert all(hit.via for hit in discord_server.rate_limits)


async def test_a_429_without_via_surfaces_as_an_error_in_discord_py(
    discord_server: DiscordServer,
) -> None:
    discord_server.set_write_limit(5, 30)
    async with connected_client(discord_server) as client:
        channel = client.get_partial_messageable(int(discord_server.channel_id()))
        await channel.send("one")
        discord_server.exhaust_bucket(discord_server.channel_id())
        discord_server.send_429_without_via(1)
        with pytest.raises(discord.HTTPException) as limited:
            await channel.send("two")
        assert limited.value.status == 429
    assert len(discord_server.rate_limits) == 1


async def test_more_than_50_requests_a_second_get_global_429s_like_discords(
    discord_server: DiscordServer,
) -> None:
    auth = {"Authorization": f"Bot {discord_server.token}"}
    url = f"{discord_server.api_url}/channels/{discord_server.channel_id()}"
    async with aiohttp.ClientSession(headers=auth) as http:

        async def get() -> tuple[int, dict[str, str], Any]:
            async with http.get(url) as resp:
                return resp.status, dict(resp.headers), await resp.json()

        answers = await asyncio.gather(*(get() for _ in range(60)))
    limited = [a for a in answers if a[0] == 429]
    assert len(answers) - len(limited) == 50 and limited
    _, headers, body = limited[0]
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert "X-RateLimit-Bucket" not in headers and "Via" in headers
    assert body["global"] is True and 0 < body["retry_after"] <= 1
    assert len(discord_server.global_rate_limits) == len(limited)


async def test_discord_py_waits_out_a_global_429_and_retries(
    discord_server: DiscordServer,
) -> None:
    async with connected_client(discord_server) as client:
        discord_server.set_global_limit(5)
        channels = await asyncio.gather(
            *(client.fetch_channel(int(discord_server.channel_id())) for _ in range(8)))
    assert len(channels) == 8
    assert discord_server.global_rate_limits


async def test_cdn_serves_attachments_and_records_a_token_sent_to_it(
    discord_server: DiscordServer,
) -> None:
    async with connected_client(discord_server) as client:
        said = await discord_server.user_says(
            discord_server.channel_id(), "file", attachments=[Upload("a.txt", b"hello")]
        )
        await discord_server.until(lambda: any(str(m.id) == said for m in client.received))
        url = client.received_id(said).attachments[0].url
    leaked = {"Authorization": "Bot leaked"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=leaked) as response:
        assert await response.read() == b"hello"
    assert discord_server.cdn_requests[-1].had_authorization


async def test_without_the_message_content_intent_content_is_blank_unless_mentioned(
    discord_server: DiscordServer,
) -> None:
    async with connected_client(discord_server):
        assert discord_server.identify_payloads[0]["intents"] & (1 << 15)
        assert discord_server.gateway.heartbeats >= 1, "discord.py beats right after HELLO"
    # A client that did not ask for the intent sees empty content for unaddressed messages.
    intents = discord.Intents.default()
    bare = discord.Client(intents=intents, guild_ready_timeout=0.05)
    with endpoints_overridden(discord_server.api_url, discord_server.gateway_url):
        seen: list[discord.Message] = []
        bare.event(_collector(seen))
        async with bare:
            await bare.login(discord_server.token)
            task = asyncio.create_task(bare.connect())
            await bare.wait_until_ready()
            channel = discord_server.channel_id()
            await discord_server.user_says(channel, "secret", mentions_bot=False)
            await discord_server.user_says(channel, "to you")
            await discord_server.until(lambda: len(seen) == 2)
            await bare.close()
            await asyncio.gather(task, return_exceptions=True)
    assert seen[0].content == ""
    assert seen[1].content.endswith("to you")


def _collector(
    seen: list[discord.Message],
) -> Callable[[discord.Message], Coroutine[Any, Any, None]]:
    async def on_message(message: discord.Message) -> None:
        seen.append(message)

    return on_message
