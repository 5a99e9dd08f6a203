"""Slash-command answers that outlive the interaction token (15 minutes on Discord; seconds
here): the answer still arrives, through the channel the command was used in."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.discord import interaction_port
from tests.fakes.discord_harness import start_bot
from tests.fakes.discord_payloads import Json
from tests.fakes.discord_server import DiscordServer
from tests.fakes.discord_state import InteractionRecord
from tests.fakes.model_server import FakeModelServer

LONG_ANSWER = " ".join(f"step{i}" for i in range(500))  # ~4,400 chars: three messages
LOADING = 1 << 7


def response(server: DiscordServer, record: InteractionRecord) -> Json:
    """The command's own message (what showed "is thinking…")."""
    return server.message(record.original_id or "")


def answered(server: DiscordServer, record: InteractionRecord, text: str) -> bool:
    """The whole of `text` shows in the channel, starting in the command's response."""
    if record.original_id is None or response(server, record)["content"] == "":
        return False
    after = [m for m in server.bot_messages(record.channel_id)
             if int(m["id"]) >= int(record.original_id)]
    return " ".join(str(m["content"]) for m in after).split() == text.split()


async def test_an_ask_answered_after_the_token_died_still_arrives(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # The token dies earlier than the bot expects (2.5 s): it learns so from Discord's 401.
    discord_server.state.token_lifetime_s = 2.5
    model_server.reply(LONG_ANSWER, ttft_s=3.0)
    async with start_bot(discord_server, model_server, tmp_path):
        record = await discord_server.invoke_command("ask", {"prompt": "the steps, please"})
        await discord_server.until(
            lambda: answered(discord_server, record, LONG_ANSWER), wait_s=20)
    shown = response(discord_server, record)
    assert not shown["flags"] & LOADING, "no longer 'is thinking…'"
    later = [m for m in discord_server.bot_messages(record.channel_id) if m["id"] != shown["id"]]
    assert later and all(m["message_reference"]["message_id"] == shown["id"] for m in later)
    assert [w.status for w in discord_server.writes if w.status == 401] == [401]


async def test_an_ask_nearing_the_token_lifetime_moves_to_the_channel_in_time(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    discord_server.state.token_lifetime_s = 3.0
    monkeypatch.setattr(interaction_port, "TOKEN_USABLE_S", 2.0)
    model_server.reply("Forty-two.", ttft_s=3.5)
    async with start_bot(discord_server, model_server, tmp_path):
        record = await discord_server.invoke_command("ask", {"prompt": "the answer?"})
        await discord_server.until(lambda: answered(discord_server, record, "Forty-two."))
    assert [w for w in discord_server.writes if w.status == 401] == [], "no write was refused"


async def test_a_summary_finished_after_the_token_died_still_arrives(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    discord_server.state.token_lifetime_s = 2.5
    channel = discord_server.channel_id()
    discord_server.seed(channel, "we ship on Friday", author="bob")
    summary = "### Key points\n- Shipping on Friday [m1]"
    model_server.reply(summary, ttft_s=3.0)
    async with start_bot(discord_server, model_server, tmp_path):
        record = await discord_server.invoke_command("summarize", channel_id=channel)
        await discord_server.until(
            lambda: record.original_id is not None
            and "Shipping on Friday" in str(response(discord_server, record)["content"]),
            wait_s=20)
    assert [w.kind for w in discord_server.writes if w.status == 401] == ["original"]


async def test_an_ask_carried_on_in_the_channel_is_not_doubled_by_a_lost_post_answer(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = discord_server
    server.state.token_lifetime_s = 1.0
    monkeypatch.setattr(interaction_port, "TOKEN_USABLE_S", 0.5)
    model_server.reply(LONG_ANSWER, ttft_s=1.0, tokens_per_s=400)
    async with start_bot(server, model_server, tmp_path) as running:
        record = await server.invoke_command("ask", {"prompt": "the steps, please"})
        server.lose_post_answers("reset")  # its first post in the channel: made, answer lost
        await server.until(lambda: answered(server, record, LONG_ANSWER), wait_s=30)
        await running.bot.drain(30)  # the turn ends (its retries included)
        assert answered(server, record, LONG_ANSWER)  # and nothing was shown twice
    posts = [w.kind for w in server.writes
             if w.channel_id == record.channel_id and w.kind.startswith("post")]
    # The lost post was tried again with its nonce, and Discord handed the message back.
    assert posts == ["post", "post-deduped"]


async def test_an_ask_whose_first_channel_post_is_lost_after_the_token_died_shows_once(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alice asks; the model is slow, the token runs out, and a moderator clears the
    stuck "is thinking…" message. The answer then starts as a new message in the channel,
    and Discord creates that message but its answer is lost (a reset). Alice must see
    the whole answer once, not twice."""
    server = discord_server
    server.state.token_lifetime_s = 1.0
    monkeypatch.setattr(interaction_port, "TOKEN_USABLE_S", 0.5)
    answer = "Forty-two, because " + " ".join(f"reason{i}" for i in range(60)) + "."
    model_server.reply(answer, ttft_s=1.5, tokens_per_s=200)
    async with start_bot(server, model_server, tmp_path) as running:
        record = await server.invoke_command("ask", {"prompt": "why forty-two?"})
        await server.until(lambda: record.original_id is not None)
        await server.moderator_deletes(record.original_id or "")
        server.lose_post_answers("reset")  # the answer's first post: made, answer lost
        await server.until(lambda: any(
            str(m["content"]).strip() == answer for m in server.bot_messages(record.channel_id)),
            wait_s=20)
        await running.bot.drain(30)  # the turn ends (its retries included)
        shown = [str(m["content"]) for m in server.bot_messages(record.channel_id)]
    assert shown == [answer], shown  # one message, the whole answer
    posts = [w.kind for w in server.writes
             if w.channel_id == record.channel_id and w.kind.startswith("post")]
    # Its lost first post was tried again with its nonce; Discord handed the message back.
    assert posts == ["post", "post-deduped"], posts
