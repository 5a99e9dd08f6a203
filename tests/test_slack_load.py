"""Many threads at once share one workspace's rate limits without a single 429."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import running_bot
from tests.fakes.slack_server import SlackServer

THREADS = 50
# Every rate (the bot's and the emulator's) runs 120x faster: two minutes of Slack
# traffic replay in about a second with the same ratios between methods.
SPEED = 120


async def test_fifty_concurrent_threads_all_complete_with_zero_429s(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    channels = ["C0BUSY", "C0OTHER"]
    # Replies that take a while to write, as a model's do (an instant one is posted whole).
    model_server.echo_ttft_s, model_server.echo_tokens_per_s = 0.2, 30
    async with running_bot(slack_server, model_server, tmp_path, speed=SPEED) as bot:
        posts = []
        for i in range(THREADS):
            user = f"U0USER{i:03d}"
            slack_server.add_user(user, f"User {i}")
            posts.append(slack_server.user_post(
                channels[i % 2], user, f"{slack_server.mention} question number {i}"
            ))
        deliveries = await asyncio.gather(*(
            slack_server.deliver(bot.url, event) for post in posts for event in post.events
        ))
        assert {d.status for d in deliveries} == {200}
        await bot.idle()

    assert slack_server.rate_limited_count == 0
    assert len(model_server.requests) == THREADS
    for i, post in enumerate(posts):
        [reply] = slack_server.bot_replies(post.channel, post.ts)
        assert reply.text.startswith("echo: ") and f"question number {i}" in reply.text
        assert not reply.streaming
    used = {c.method for c in slack_server.calls}
    assert {"chat.startStream", "chat.stopStream"} <= used  # streams were used where possible
