"""Conversations with the real Discord bot: emulator + fake model + real SQLite store."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

from PIL import Image

from tests.fakes.bad_files import jpeg
from tests.fakes.discord_harness import (
    answer_to,
    replies_to,
    start_bot,
)
from tests.fakes.discord_server import DiscordServer, Upload
from tests.fakes.model_requests import image_urls, seen_texts
from tests.fakes.model_server import FakeModelServer


async def test_mention_with_image_streams_in_by_edits_and_model_gets_a_small_data_url(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    text = " ".join(f"word{i}" for i in range(40))
    model_server.reply(text, tokens_per_s=16)
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        said = await discord_server.user_says(
            channel, "what is in this photo?",
            attachments=[Upload("photo.jpg", jpeg(4000, 3000), "image/jpeg")],
        )
        reply = await answer_to(discord_server, said, text)
    writes = [w for w in discord_server.writes if w.message_id == reply["id"]]
    assert [w.kind for w in writes][:1] == ["post"]
    assert len([w for w in writes if w.kind == "edit"]) >= 2, "the reply should stream in"
    assert writes[0].content != text
    assert discord_server.typing and discord_server.typing[0][0] <= writes[0].at
    [url] = image_urls(model_server.requests[-1].body)
    assert url.startswith("data:image/")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(sent.size) <= 2048 and sent.size[0] > sent.size[1]
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "Alice" in seen and "what is in this photo?" in seen
    assert f"<@{discord_server.bot.id}>" not in seen, "the bot's own mention is stripped"
    assert discord_server.rate_limits == []


async def test_a_reply_chain_continues_with_history_and_labelled_speakers(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Nice to meet you, Zed.")
    model_server.reply("Alice said her name is Zed.")
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        first = await discord_server.user_says(channel, "my name is Zed, say hi to <@{bob}>"
                                               .format(bob=discord_server.user("bob").id),
                                               mentions=["bob"])
        answer = await answer_to(discord_server, first, "Nice to meet you, Zed.")
        # Bob replies to the bot's message without mentioning it: the chain continues.
        follow = await discord_server.user_says(
            channel, "what is her name?", author="bob", mentions_bot=False, reply_to=answer["id"]
        )
        await answer_to(discord_server, follow, "Alice said her name is Zed.")
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "my name is Zed, say hi to @Bob" in seen
    assert "Nice to meet you, Zed." in seen
    assert "Bob" in seen.split("what is her name?")[0][-60:], "the speaker is labelled"


async def test_people_replying_to_each_other_in_a_chain_are_left_alone(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        first = await discord_server.user_says(channel, "question for the bot")
        await discord_server.until(lambda: bool(replies_to(discord_server, first)))
        aside = await discord_server.user_says(
            channel, "good question, Alice", author="bob", mentions_bot=False, reply_to=first
        )
        plain = await discord_server.user_says(channel, "just chatting", mentions_bot=False)
        marker = await discord_server.user_says(channel, "now for you, bot")
        await discord_server.until(lambda: bool(replies_to(discord_server, marker)))
    assert replies_to(discord_server, aside) == [] and replies_to(discord_server, plain) == []
    assert len(model_server.requests) == 2


async def test_replying_to_an_earlier_message_forks_a_branch(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("A1: noted, blue.")
    model_server.reply("A2: and green.")
    model_server.reply("A3: branch answer.")
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        m1 = await discord_server.user_says(channel, "my colour is blue")
        a1 = await answer_to(discord_server, m1, "A1: noted, blue.")
        m2 = await discord_server.user_says(channel, "also green", reply_to=a1["id"])
        await answer_to(discord_server, m2, "A2: and green.")
        m3 = await discord_server.user_says(channel, "what colours?", reply_to=a1["id"])
        await answer_to(discord_server, m3, "A3: branch answer.")
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "my colour is blue" in seen and "A1: noted, blue." in seen
    assert "also green" not in seen and "A2: and green." not in seen


def without_fences(text: str) -> str:
    """The content with fence lines and whitespace removed (splitting adds fences)."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("```")]
    return re.sub(r"\s", "", "".join(kept))


async def test_a_5000_character_answer_is_split_into_balanced_chained_parts(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    prose = "\n".join(f"Line {i} of the explanation, with some words." for i in range(36))
    code = "\n".join(f"    result_{i} = compute({i}, factor=2)  # step {i}" for i in range(60))
    answer = f"{prose}\n\n```python\n{code}\n```\n\n{prose}"
    assert len(answer) > 5000 and answer.index("```") < 2000 < answer.rindex("```")
    model_server.reply(answer)
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        said = await discord_server.user_says(channel, "explain with code")

        def parts() -> list[dict[str, Any]]:
            return discord_server.bot_messages(channel)

        def whole() -> str:
            return without_fences("\n".join(m["content"] for m in parts()))

        await discord_server.until(lambda: whole() == without_fences(answer))
    shown = parts()
    assert len(shown) >= 3
    assert all(len(m["content"]) <= 2000 for m in shown)
    assert all(m["content"].count("```") % 2 == 0 for m in shown), "every part renders alone"
    chain = [said] + [m["id"] for m in shown[:-1]]
    assert [m["message_reference"]["message_id"] for m in shown] == chain
    assert not [w for w in discord_server.writes if w.status != 200]


async def test_three_users_at_once_get_complete_replies_without_a_single_429(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    texts = {name: " ".join(f"{name}{i}" for i in range(24)) for name in ("a", "b", "c")}
    for text in texts.values():
        model_server.reply(text, tokens_per_s=24)
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        asked = [
            await discord_server.user_says(channel, f"question from {user}", author=user)
            for user in ("alice", "bob", "carol")
        ]

        def finished() -> bool:
            shown = {m["content"] for m in discord_server.bot_messages(channel)}
            return set(texts.values()) <= shown

        await discord_server.until(finished, wait_s=20)
    assert discord_server.rate_limits == []
    assert all(w.status == 200 for w in discord_server.writes)
    assert {m["message_reference"]["message_id"] for m in discord_server.bot_messages(channel)} \
        == set(asked)


async def test_everyone_in_the_model_output_pings_nobody(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    alice = discord_server.user("alice").id
    admins = discord_server.role_id("Admins")
    text = f"@everyone @here look at this <@{alice}> and <@&{admins}>! " + " ".join(["more"] * 30)
    model_server.reply(text, tokens_per_s=40)
    async with start_bot(discord_server, model_server, tmp_path):
        said = await discord_server.user_says(discord_server.channel_id(), "shout")
        await answer_to(discord_server, said, text)
    assert discord_server.writes
    for write in discord_server.writes:
        assert write.allowed_mentions is not None and write.allowed_mentions["parse"] == []
        assert write.pings == []


async def test_an_oversized_attachment_is_refused_before_download_with_a_warning(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("I can only see your text.")
    async with start_bot(discord_server, model_server, tmp_path, MAX_FILE_BYTES=1_000_000):
        channel = discord_server.channel_id()
        big = Upload("holiday-video.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/png",
                     declared_size=25_000_000)
        said = await discord_server.user_says(channel, "see attached", attachments=[big])
        await discord_server.until(
            lambda: any("I can only see your text." in m["content"]
                        for m in replies_to(discord_server, said))
        )
    [reply] = replies_to(discord_server, said)
    assert "holiday-video.png" in reply["content"]
    assert discord_server.cdn_requests == []
    assert image_urls(model_server.requests[-1].body) == []


async def test_an_unsupported_file_gets_a_warning_naming_it(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Here is what I can say.")
    async with start_bot(discord_server, model_server, tmp_path):
        archive = Upload("backup.zip", b"PK\x03\x04" + b"\x00" * 64, "application/zip")
        said = await discord_server.user_says(
            discord_server.channel_id(), "what is inside?", attachments=[archive]
        )
        await discord_server.until(
            lambda: any("Here is what I can say." in m["content"]
                        for m in replies_to(discord_server, said))
        )
    [reply] = replies_to(discord_server, said)
    assert "backup.zip" in reply["content"]


async def test_a_model_failure_midway_leaves_partial_text_and_a_clear_marker(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.fail_midstream("The first half of the answer", error_message="upstream died")
    async with start_bot(discord_server, model_server, tmp_path):
        said = await discord_server.user_says(discord_server.channel_id(), "go")
        await discord_server.until(
            lambda: any("⚠️" in m["content"] for m in replies_to(discord_server, said))
        )
    [reply] = replies_to(discord_server, said)
    assert reply["content"].startswith("The first half of the answer")
    assert "cut off" in reply["content"]


async def test_other_bots_and_its_own_messages_are_ignored(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        await discord_server.user_says(channel, "hey bot, echo this", author="otherbot")
        human = await discord_server.user_says(channel, "hello")
        await discord_server.until(lambda: bool(replies_to(discord_server, human)))
        # The bot's own reply came back over the gateway as MESSAGE_CREATE; a later human
        # message is answered, so everything before it was processed.
        marker = await discord_server.user_says(channel, "one more")
        await discord_server.until(lambda: bool(replies_to(discord_server, marker)))
    assert len(model_server.requests) == 2
    assert len(discord_server.bot_messages(channel)) == 2


async def test_a_message_redelivered_after_resume_gets_no_second_reply(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        said = await discord_server.user_says(channel, "only once please")
        await discord_server.until(lambda: bool(replies_to(discord_server, said)))
        await discord_server.force_reconnect(redeliver_message=said)
        await discord_server.until(lambda: discord_server.gateway.resumed.is_set())
        marker = await discord_server.user_says(channel, "after the resume")
        await discord_server.until(lambda: bool(replies_to(discord_server, marker)))
    assert len(discord_server.gateway.resumes) == 1
    assert len(replies_to(discord_server, said)) == 1
    assert len(model_server.requests) == 2


async def test_dms_are_answered_without_a_mention_unless_turned_off(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Hello in private.")
    async with start_bot(discord_server, model_server, tmp_path):
        dm = discord_server.dm_channel_id("alice")
        said = await discord_server.user_says(dm, "psst", mentions_bot=False)
        await answer_to(discord_server, said, "Hello in private.")


async def test_dms_are_ignored_when_disabled(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with start_bot(discord_server, model_server, tmp_path, DISCORD_ALLOW_DMS=False):
        dm = discord_server.dm_channel_id("alice")
        await discord_server.user_says(dm, "psst", mentions_bot=False)
        channel = discord_server.channel_id()
        marker = await discord_server.user_says(channel, "in public")
        await discord_server.until(lambda: bool(replies_to(discord_server, marker)))
    assert discord_server.bot_messages(dm) == []


async def test_auto_thread_opens_a_thread_and_follow_ups_need_no_mention(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Let's talk here.")
    model_server.reply("You asked about tea.")
    async with start_bot(discord_server, model_server, tmp_path, DISCORD_AUTO_THREAD=True):
        channel = discord_server.channel_id()
        said = await discord_server.user_says(channel, "tell me about tea")
        await discord_server.until(lambda: said in discord_server.state.threads_created)
        thread = said  # a thread opened from a message has the message's id
        await discord_server.until(
            lambda: [m["content"] for m in discord_server.bot_messages(thread)]
            == ["Let's talk here."]
        )
        follow = await discord_server.user_says(thread, "what did I ask?", mentions_bot=False)
        await answer_to(discord_server, follow, "You asked about tea.")
    assert discord_server.bot_messages(channel) == []
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "tell me about tea" in seen and "Let's talk here." in seen
