"""`threadwise slack` as the CLI runs it: run_slack until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import aiohttp
import pytest

from bots.config import ConfigError
from bots.slack_bot import run_slack
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import bot_settings
from tests.fakes.slack_server import SlackServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _healthz(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status
    except aiohttp.ClientConnectionError:
        return 0


async def test_run_slack_serves_answers_and_stops_cleanly(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    port = _free_port()
    settings = bot_settings(slack_server, model_server, tmp_path / "tw.db", PORT=port)
    url = f"http://127.0.0.1:{port}"
    running = asyncio.create_task(run_slack(settings))
    try:
        statuses: list[int] = []

        async def healthy() -> bool:
            statuses.append(await _healthz(url + "/healthz"))
            return statuses[-1] == 200

        while not await healthy():
            assert not running.done(), running
            await asyncio.sleep(0.05)
        post = slack_server.user_post("C0GENERAL", "U0ALICE", f"{slack_server.mention} hi")
        assert (await slack_server.deliver(url, post.events[-1])).status == 200
        await slack_server.wait_until(
            lambda: any(not m.streaming for m in slack_server.bot_replies("C0GENERAL", post.ts))
        )
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert await _healthz(url + "/healthz") == 0  # the listener is gone
    assert "hi" in slack_server.bot_text("C0GENERAL", post.ts)


async def test_a_rejected_token_is_a_one_line_config_error(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = bot_settings(slack_server, model_server, tmp_path / "tw.db",
                            SLACK_BOT_TOKEN="xoxb-revoked", PORT=_free_port())
    with pytest.raises(ConfigError, match=r"SLACK_BOT_TOKEN.*invalid_auth"):
        await run_slack(settings)
