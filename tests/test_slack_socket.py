"""Socket Mode: events over the emulator's websocket, acked by envelope id."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import running_bot
from tests.fakes.slack_server import SlackServer

CHANNEL = "C0GENERAL"


async def test_socket_mode_acks_each_envelope_and_answers_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Hello over the socket.", ttft_s=0.3)
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           socket_mode=True) as bot:
        assert bot.socket_mode
        [opened] = slack_server.calls_to("apps.connections.open")
        assert opened.headers["Authorization"] == f"Bearer {slack_server.cfg.app_token}"
        async with aiohttp.ClientSession() as http, http.get(bot.url + "/healthz") as resp:
            assert resp.status == 200
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi socket")
        acks = [await slack_server.socket.deliver(event) for event in post.events]
        # Slack redelivers when it thinks an ack was late; the repeat is acked too.
        acks.append(await slack_server.socket.deliver(post.events[-1], retry_attempt=1))
        assert len(bot.tasks) == 1  # acked while the answer is still being written
        await bot.idle()
        async with aiohttp.ClientSession() as http, http.post(
            bot.url + "/slack/events", data=b"{}"
        ) as resp:
            assert resp.status == 404  # no HTTP events endpoint in Socket Mode
    assert all(ack.get("envelope_id") for ack in acks) and len(acks) == 3
    assert len(model_server.requests) == 1
    [reply] = slack_server.bot_replies(CHANNEL, post.ts)
    assert reply.text == "Hello over the socket."
