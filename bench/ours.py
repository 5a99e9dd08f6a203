"""threadwise itself, composed for the bench: the real Slack bot and the real Discord bot,
and the re-read-the-thread history baseline in front of our own turn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.bot import SlackBot
from bots.compose import open_core
from core.metrics import Metrics
from core.model.types import ModelClient
from core.ports import ChatPort, Store
from core.service import ConversationService, TurnOutcome
from core.settings import Settings
from core.types import Inbound
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import bot_settings
from tests.fakes.slack_server import SlackServer

log = logging.getLogger(__name__)


class RereadingService(ConversationService):
    """ChatGPT-in-Slack's history strategy: every turn first reads the whole thread back
    from the platform (conversations.replies, 429s retried twice). The turn itself is
    ours, so the difference to plain threadwise is exactly the cost of that read."""

    def __init__(
        self, *, settings: Settings, store: Store, model: ModelClient, metrics: Metrics,
        slack: AsyncWebClient,
    ) -> None:
        super().__init__(settings=settings, store=store, model=model, metrics=metrics)
        self.slack = slack
        self.read_failures = 0

    async def handle(self, inbound: Inbound, port: ChatPort) -> TurnOutcome:
        if inbound.addressed:
            try:
                await self.slack.conversations_replies(
                    channel=inbound.key.channel, ts=inbound.key.root, limit=1000
                )
            except SlackApiError as exc:
                self.read_failures += 1
                log.debug("conversations.replies failed: %s", exc.response.get("error"))
        return await super().handle(inbound, port)


@asynccontextmanager
async def our_slack_bot(
    slack: SlackServer, model: FakeModelServer, workdir: Path, *, reread: bool = False
) -> AsyncIterator[SlackBot]:
    """The real SlackBot in HTTP mode (real core, SQLite) against the emulator."""
    settings = bot_settings(slack, model, workdir / "threadwise.db")
    async with open_core(settings) as core:
        service = core.service
        if reread:
            client = AsyncWebClient(token=slack.cfg.bot_token, base_url=slack.api_url)
            client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
            service = RereadingService(
                settings=settings, store=core.store, model=core.model, metrics=core.metrics,
                slack=client,
            )
        bot = SlackBot(settings, service, registry=core.metrics.registry, host="127.0.0.1",
                       port=0)
        try:
            await bot.start()
            yield bot
        finally:
            await bot.aclose()
