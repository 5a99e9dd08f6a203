"""Messages Discord delivers more than once, or about places the bot has not seen yet."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.discord_harness import answer_to, start_bot
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_requests import seen_texts
from tests.fakes.model_server import FakeModelServer


async def test_auto_thread_message_seen_by_two_processes_is_answered_once_in_its_thread(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # A rolling deploy: the old and the new process are both connected for a while, and
    # Discord sends each of them every message.
    model_server.reply("Tea is a drink.")
    model_server.reply("Tea is a drink (again).")
    async with (
        start_bot(discord_server, model_server, tmp_path, DISCORD_AUTO_THREAD=True),
        start_bot(discord_server, model_server, tmp_path, DISCORD_AUTO_THREAD=True),
    ):
        channel = discord_server.channel_id()
        said = await discord_server.user_says(channel, "tell me about tea")
        thread = said  # a thread opened from a message has the message's id
        await discord_server.until(
            lambda: [m["content"] for m in discord_server.bot_messages(thread)]
            == ["Tea is a drink."]
        )
        await asyncio.sleep(1.5)  # room for a second answer, were one coming
    assert discord_server.state.threads_created == [thread]
    assert discord_server.bot_messages(channel) == [], "no second answer in the channel"
    assert [m["content"] for m in discord_server.bot_messages(thread)] == ["Tea is a drink."]
    assert len(model_server.requests) == 1


async def test_a_thread_the_bot_never_heard_of_is_still_a_thread(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # The bot may answer only in #general, and threads under it. Alice's thread was made
    # while the bot was away, so no event ever told discord.py about it.
    model_server.reply("Noted: blue.")
    model_server.reply("You said blue.")
    general = discord_server.channel_id("general")
    async with start_bot(discord_server, model_server, tmp_path,
                         DISCORD_ALLOWED_CHANNELS=general) as running:
        thread = discord_server.add_thread("colours", parent=general)
        assert running.bot.get_channel(int(thread)) is None
        first = await discord_server.user_says(thread, "my colour is blue")
        await answer_to(discord_server, first, "Noted: blue.")
        second = await discord_server.user_says(thread, "what colour did I say?")
        await answer_to(discord_server, second, "You said blue.")
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "my colour is blue" in seen and "Noted: blue." in seen  # one conversation
