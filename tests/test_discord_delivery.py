"""Messages Discord delivers more than once, or about places the bot has not seen yet; and
replies still being written when the bot is told to stop."""

from __future__ import annotations

import time
from pathlib import Path

from core.orphans import INTERRUPTED
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
        start_bot(discord_server, model_server, tmp_path, DISCORD_AUTO_THREAD=True) as a,
        start_bot(discord_server, model_server, tmp_path, DISCORD_AUTO_THREAD=True) as b,
    ):
        channel = discord_server.channel_id()
        said = await discord_server.user_says(channel, "tell me about tea")
        thread = said  # a thread opened from a message has the message's id
        await discord_server.until(
            lambda: [m["content"] for m in discord_server.bot_messages(thread)]
            == ["Tea is a drink."]
        )
        # Until the other process has seen the message too, and let it go as a duplicate.
        await discord_server.until(lambda: sum(
            r.core.metrics.registry.get_sample_value(
                "threadwise_turns_total", {"platform": "discord", "outcome": "duplicate"}
            ) or 0
            for r in (a, b)
        ) == 1)
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


async def test_a_reply_outlasting_the_stop_grace_keeps_what_it_showed_and_is_marked_later(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # `docker stop` while an essay is being written: the bot waits for it only so long
    # (Docker SIGKILLs after its stop_grace_period), then stops with the reply cut short.
    model_server.reply(" ".join(f"word{i}" for i in range(400)), tokens_per_s=10)
    general = discord_server.channel_id()
    quick = {"THREADWISE_LEASE_TTL_S": 1, "THREADWISE_ORPHAN_SWEEP_S": 0.2}
    async with start_bot(discord_server, model_server, tmp_path, **quick) as running:
        await discord_server.user_says(general, "write me an essay")
        await discord_server.until(lambda: any(m["content"] for m in
                                               discord_server.bot_messages(general)))
        started = time.monotonic()
        await running.bot.drain(grace_s=0.5)
        assert time.monotonic() - started < 2.0
    [cut] = discord_server.bot_messages(general)
    shown = cut["content"]
    assert shown.startswith("word0") and "word399" not in shown

    async with start_bot(discord_server, model_server, tmp_path, **quick):
        await discord_server.until(
            lambda: discord_server.bot_messages(general)[0]["content"].endswith(INTERRUPTED))
    assert discord_server.bot_messages(general)[0]["content"].startswith(shown)
