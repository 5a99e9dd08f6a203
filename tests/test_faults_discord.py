"""Discord faults through the real bot: 429s without `Via` in the middle of a reply, and
a gateway connection cut mid-reply that the bot RESUMEs, with events replayed.

The reply ends whole, in one message, with nothing posted twice; history is complete;
the other channel is answered meanwhile.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bots.discord_bot import RunningDiscord
from core.types import StoredMessage
from tests.fakes.discord_harness import answer_to, replies_to, start_bot
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_server import FakeModelServer

ANSWER = " ".join(f"part{i}" for i in range(50))


async def history_of(running: RunningDiscord, channel: str, message_id: str) -> list[
    StoredMessage
]:
    """The thread as stored, once its turn has saved the finished reply."""
    for _ in range(250):
        found = await running.core.store.locate("discord", channel, message_id)
        if found is not None:
            history = await running.core.store.load_thread(found.key)
            if history and all(m.status != "streaming" for m in history):
                return history
        await asyncio.sleep(0.02)
    raise AssertionError("the turn never saved its reply")


async def other_channel_is_answered(server: DiscordServer) -> None:
    random = server.channel_id("random")
    said = await server.user_says(random, "hello over here")
    await server.until(lambda: any("hello over here" in m["content"]
                                   for m in replies_to(server, said)))


async def test_429s_without_via_in_the_middle_of_a_reply_are_waited_out(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    server = discord_server
    server.set_write_limit(5, 1.5)
    model_server.reply(ANSWER, tokens_per_s=12)  # a few seconds of edits
    async with start_bot(server, model_server, tmp_path) as running:
        channel = server.channel_id()
        said = await server.user_says(channel, "stream something long")
        await server.until(lambda: bool(replies_to(server, said)))
        server.exhaust_bucket(channel)
        server.send_429_without_via(3)  # discord.py raises on these instead of waiting
        reply = await answer_to(server, said, ANSWER)
        await other_channel_is_answered(server)
        history = await history_of(running, channel, said)
    assert sum(1 for hit in server.rate_limits if not hit.via) >= 1
    assert [m["id"] for m in replies_to(server, said)] == [reply["id"]]  # one message
    posts = [w for w in server.writes if w.kind == "post" and w.channel_id == channel]
    assert len([w for w in posts if w.status == 200]) == 1  # never posted twice
    assert [(m.role, m.status, m.text) for m in history] == [
        ("user", "complete", "stream something long"), ("assistant", "complete", ANSWER)]


async def test_a_gateway_cut_mid_reply_is_resumed_replayed_events_get_no_second_reply(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    server = discord_server
    model_server.reply(ANSWER, tokens_per_s=25)
    async with start_bot(server, model_server, tmp_path) as running:
        channel = server.channel_id()
        said = await server.user_says(channel, "a long one please")
        await server.until(lambda: bool(replies_to(server, said)))  # the reply is streaming
        await server.drop_gateway(redeliver_message=said)
        # Said while the bot is disconnected: buffered by Discord, delivered on RESUME.
        meanwhile = await server.user_says(server.channel_id("random"), "while you were away")
        await server.until(lambda: server.gateway.resumed.is_set())
        reply = await answer_to(server, said, ANSWER)
        await server.until(lambda: any("while you were away" in m["content"]
                                       for m in replies_to(server, meanwhile)))
        history = await history_of(running, channel, said)
    assert len(server.gateway.resumes) == 1 and len(server.identify_payloads) == 1
    assert [m["id"] for m in replies_to(server, said)] == [reply["id"]]
    assert len(replies_to(server, meanwhile)) == 1
    assert len(model_server.requests) == 2  # the replayed message never reached the model
    assert [(m.role, m.text) for m in history] == [("user", "a long one please"),
                                                  ("assistant", ANSWER)]


@pytest.mark.parametrize("how", ["502", "reset"])
async def test_a_post_discord_made_whose_answer_was_lost_is_not_posted_twice(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path, how: str
) -> None:
    server = discord_server
    model_server.reply(ANSWER, tokens_per_s=40)
    async with start_bot(server, model_server, tmp_path) as running:
        channel = server.channel_id()
        server.lose_post_answers(how)  # created; then a proxy error, or a dropped connection
        said = await server.user_says(channel, "say it once")
        reply = await answer_to(server, said, ANSWER)
        history = await history_of(running, channel, said)
        await other_channel_is_answered(server)
    assert [m["id"] for m in replies_to(server, said)] == [reply["id"]]  # one message
    posts = [w for w in server.writes if w.channel_id == channel and w.kind.startswith("post")]
    # Discord saw the same nonce again and handed back the message it had made.
    assert [w.kind for w in posts] == ["post", "post-deduped"]
    assert {w.message_id for w in posts} == {reply["id"]}
    assert [(m.role, m.status, m.text) for m in history] == [
        ("user", "complete", "say it once"), ("assistant", "complete", ANSWER)]
