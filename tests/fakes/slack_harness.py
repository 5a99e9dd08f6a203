"""Run the real Slack bot (real service, SQLite store) against the emulators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from adapters.slack.bot import SlackBot
from bots.compose import open_core
from bots.config import load_overrides
from core.settings import Settings
from tests.fakes.known_secrets import MODEL_API_KEY
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import SlackServer


def bot_settings(
    slack: SlackServer, model: FakeModelServer, db: Path, *, socket_mode: bool = False,
    **extra: Any,
) -> Settings:
    values: dict[str, Any] = {
        "MODEL_BASE_URL": model.base_url, "MODEL_API_KEY": MODEL_API_KEY,
        "DATABASE_URL": f"sqlite:///{db}", "SLACK_BOT_TOKEN": slack.cfg.bot_token,
        "SLACK_API_URL": slack.api_url, "SLACK_FILE_HOSTS": slack.file_host, "PORT": 0,
    }
    if socket_mode:
        values["SLACK_APP_TOKEN"] = slack.cfg.app_token
    else:
        values["SLACK_SIGNING_SECRET"] = slack.signing_secret
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_bot(
    slack: SlackServer, model: FakeModelServer, tmp_path: Path, *, speed: float = 1.0,
    socket_mode: bool = False, stream_idle_s: float = 30.0, **extra: Any,
) -> AsyncIterator[SlackBot]:
    """speed scales the bot's and the emulator's rate limits alike."""
    slack.set_rate_speed(speed)
    settings = bot_settings(slack, model, tmp_path / "threadwise.db", socket_mode=socket_mode,
                            **extra)
    overrides = load_overrides(settings)  # THREADWISE_CONFIG, as `threadwise slack` reads it
    async with open_core(settings, overrides) as core:
        bot = SlackBot(settings, core.service, registry=core.metrics.registry, host="127.0.0.1",
                       port=0, speed=speed, stream_idle_s=stream_idle_s, overrides=overrides,
                       tailored=core.services)
        try:
            await bot.start()
            yield bot
        finally:
            await bot.aclose()


def request_text(body: dict[str, Any]) -> str:
    """All text of a recorded model request, for 'did the model see X' assertions."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "content") and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return "\n".join(parts)
