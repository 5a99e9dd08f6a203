"""The real Slack bot over the emulators, with the core at hand for fault tests.

Like slack_harness.running_bot, but it also yields the Core (to read history from the
store) and lets a test shorten the SQLite busy timeout, which open_core leaves at 5 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.slack.bot import SlackBot
from bots.compose import Core
from core.metrics import Metrics
from core.model import build_model_client
from core.service import ConversationService
from core.store import open_store
from core.types import StoredMessage, ThreadKey
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import bot_settings
from tests.fakes.slack_server import Post, SlackServer
from tests.fakes.slack_state import Message

CHANNEL = "C0GENERAL"


@dataclass
class SlackRig:
    slack: SlackServer
    bot: SlackBot
    core: Core

    async def ask(self, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None,
                  channel: str = CHANNEL) -> Post:
        """A person posts (mentioning the bot unless in a thread); Slack delivers it."""
        prefix = "" if thread_ts else f"{self.slack.mention} "
        post = self.slack.user_post(channel, user, prefix + text, thread_ts=thread_ts)
        for event in post.events:
            delivery = await self.slack.deliver(self.bot.url, event)
            assert delivery.status == 200, (delivery.status, delivery.body)
        return post

    def replies(self, post: Post, channel: str = CHANNEL) -> list[Message]:
        return self.slack.bot_replies(channel, post.root)

    def key(self, post: Post, channel: str = CHANNEL) -> ThreadKey:
        return ThreadKey("slack", self.slack.cfg.team_id, channel, post.root)

    async def history(self, post: Post, channel: str = CHANNEL) -> list[StoredMessage]:
        """The thread as stored once every running turn has finished (and persisted)."""
        await self.bot.idle()
        return await self.core.store.load_thread(self.key(post, channel))

    async def answered(self, post: Post, channel: str = CHANNEL) -> None:
        """Wait until the thread shows a finished bot reply."""
        await self.slack.wait_until(
            lambda: any(not m.streaming for m in self.replies(post, channel))
        )


@asynccontextmanager
async def slack_rig(
    slack: SlackServer, model: FakeModelServer, tmp_path: Path, *, speed: float = 10.0,
    busy_timeout_ms: int = 5000, **extra: Any,
) -> AsyncIterator[SlackRig]:
    """A started Slack bot (HTTP mode) whose core uses a SQLite file in tmp_path."""
    slack.set_rate_speed(speed)
    settings = bot_settings(slack, model, tmp_path / "threadwise.db", **extra)
    store = await open_store(settings.database_url, busy_timeout_ms=busy_timeout_ms)
    model_client = build_model_client(settings)
    metrics = Metrics()
    service = ConversationService(settings=settings, store=store, model=model_client,
                                  metrics=metrics)
    core = Core(settings, store, model_client, service, metrics)
    bot = SlackBot(settings, service, registry=metrics.registry, host="127.0.0.1", port=0,
                   speed=speed)
    try:
        await bot.start()
        yield SlackRig(slack, bot, core)
    finally:
        await bot.aclose()
        await model_client.aclose()
        await store.close()


def shown(messages: list[Message]) -> str:
    return "\n".join(m.text for m in messages)
