"""Front ends that run the baseline strategies as real bots against the emulators.

Slack: a Bolt AsyncApp behind its aiohttp adapter, answering signed Events API
deliveries like any Slack app, with slack_sdk's AsyncWebClient (429s retried twice,
as ChatGPT-in-Slack configures it). Discord: a discord.py Client on the emulator's
gateway that answers mentions with Message.reply / Message.edit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import discord
from aiohttp import web
from openai import AsyncOpenAI
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.discord.endpoints import endpoints_overridden
from adapters.slack.events import TaskKeeper
from bench.baselines import Strategy, model_deltas
from tests.fakes.discord_server import DiscordServer
from tests.fakes.slack_server import SlackServer

MODEL = "openai/gpt-5.4-mini"


class SlackSink:
    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str) -> None:
        self._client, self._channel, self._thread_ts = client, channel, thread_ts

    async def post(self, text: str) -> str:
        resp = await self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=text
        )
        return str(resp["ts"])

    async def edit(self, message_id: str, text: str) -> None:
        await self._client.chat_update(channel=self._channel, ts=message_id, text=text)


class DiscordSink:
    def __init__(self, trigger: discord.Message) -> None:
        self._trigger = trigger
        self._sent: dict[str, discord.Message] = {}

    async def post(self, text: str) -> str:
        message = await self._trigger.reply(text, mention_author=False)
        self._sent[str(message.id)] = message
        return str(message.id)

    async def edit(self, message_id: str, text: str) -> None:
        self._sent[message_id] = await self._sent[message_id].edit(content=text)


def _openai(model_url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=model_url, api_key="bench-key", max_retries=0)


@asynccontextmanager
async def baseline_slack_app(
    slack: SlackServer, model_url: str, strategy: Strategy
) -> AsyncIterator[tuple[str, TaskKeeper]]:
    """A Bolt app answering app_mention with `strategy`; yields (its URL, its tasks)."""
    client = AsyncWebClient(token=slack.cfg.bot_token, base_url=slack.api_url, timeout=30)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    openai = _openai(model_url)
    tasks = TaskKeeper()
    app = AsyncApp(
        client=client, signing_secret=slack.signing_secret,
        logger=logging.getLogger("bench.baseline.bolt"),
    )

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        sink = SlackSink(client, str(event["channel"]), str(event.get("thread_ts") or event["ts"]))
        tasks.spawn(strategy(model_deltas(openai, MODEL, str(event["text"])), sink), "baseline")

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        return None  # mentions are answered through app_mention

    async def events(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield f"http://127.0.0.1:{port}", tasks
    finally:
        await tasks.aclose()
        await runner.cleanup()
        await openai.close()


class BaselineDiscordBot(discord.Client):
    def __init__(self, model_url: str, strategy: Strategy) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.strategy = strategy
        self.openai = _openai(model_url)
        self.replies = TaskKeeper()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or self.user not in message.mentions:
            return
        deltas = model_deltas(self.openai, MODEL, message.content)
        self.replies.spawn(self.strategy(deltas, DiscordSink(message)), "baseline")


@asynccontextmanager
async def baseline_discord_bot(
    server: DiscordServer, model_url: str, strategy: Strategy
) -> AsyncIterator[BaselineDiscordBot]:
    bot = BaselineDiscordBot(model_url, strategy)
    with endpoints_overridden(server.api_url, server.gateway_url):
        async with bot:
            await bot.login(server.token)
            connection = asyncio.create_task(bot.connect())
            try:
                await asyncio.wait_for(bot.wait_until_ready(), 10)
                yield bot
            finally:
                await bot.replies.aclose()
                await bot.openai.close()
                await bot.close()
                await asyncio.gather(connection, return_exceptions=True)
