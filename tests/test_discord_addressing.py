"""How people address the bot, and what the model gets to see when they do."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.bad_files import jpeg
from tests.fakes.discord_harness import answer_to, start_bot
from tests.fakes.discord_server import DiscordServer, Upload
from tests.fakes.model_requests import image_sizes, seen_texts
from tests.fakes.model_server import FakeModelServer


async def test_mentioning_the_bots_own_role_is_a_mention(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # Typing "@threadwise" offers the bot and the role Discord made for it; alice picks the role.
    model_server.reply("It's 4.")
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        role = discord_server.state.bot_role.id
        said = await discord_server.user_says(channel, f"<@&{role}> what's 2+2?",
                                              mentions_bot=False)
        await answer_to(discord_server, said, "It's 4.")
    asked = [t for t in seen_texts(model_server.requests[0].body) if "2+2" in t]
    assert asked == ["Alice: what's 2+2?"]  # the role mention only called the bot


async def test_asking_about_someone_elses_photo_by_replying_sends_the_photo(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("A cat on a sofa.")
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        photo = await discord_server.user_says(
            channel, "look at this", author="bob", mentions_bot=False,
            attachments=[Upload("cat.jpg", jpeg(800, 600), "image/jpeg")],
        )
        ask = await discord_server.user_says(channel, "what's in this picture?", reply_to=photo)
        await answer_to(discord_server, ask, "A cat on a sofa.")
    body = model_server.requests[0].body
    assert image_sizes(body) == [(800, 600)]
    assert any("Bob: look at this" in t for t in seen_texts(body))


async def test_in_a_thread_replying_to_someone_elses_photo_sends_the_photo(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("A beagle, I think.")
    thread = discord_server.add_thread("pets")  # alice's thread: the bot answers when called
    async with start_bot(discord_server, model_server, tmp_path):
        photo = await discord_server.user_says(
            thread, "mine", author="bob", mentions_bot=False,
            attachments=[Upload("dog.jpg", jpeg(640, 480), "image/jpeg")],
        )
        ask = await discord_server.user_says(thread, "what breed?", author="carol",
                                             reply_to=photo)
        await answer_to(discord_server, ask, "A beagle, I think.")
    body = model_server.requests[0].body
    assert image_sizes(body) == [(640, 480)]
    assert any("Bob: mine" in t for t in seen_texts(body))
