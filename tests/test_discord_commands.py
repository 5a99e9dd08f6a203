"""Slash commands end to end: the real bot, the emulator's interactions, the real core."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image

from core.store import SQLiteStore
from tests.fakes.bad_files import jpeg
from tests.fakes.discord_harness import (
    answer_to,
    replies_to,
    response_text,
    start_bot,
    usage_reaches,
)
from tests.fakes.discord_server import DiscordServer, Upload
from tests.fakes.discord_state import InteractionRecord
from tests.fakes.model_requests import image_urls, seen_texts
from tests.fakes.model_server import FakeModelServer

DEADLINE_S = 3.0


def deferred_in_time(record: InteractionRecord) -> bool:
    return record.callback_at is not None and record.callback_at - record.created < DEADLINE_S


async def final_text(server: DiscordServer, record: InteractionRecord, text: str) -> None:
    await server.until(
        lambda: [m["content"] for m in server.interaction_messages(record)][:1] == [text]
    )


async def test_commands_are_synced_on_start(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with start_bot(discord_server, model_server, tmp_path):
        pass
    [(scope, commands)] = discord_server.command_syncs
    assert scope == "global"
    assert sorted(c["name"] for c in commands) == ["ask", "model", "reset", "summarize", "usage"]
    ask = next(c for c in commands if c["name"] == "ask")
    assert [(o["name"], o["type"], o.get("required", False)) for o in ask["options"]] == [
        ("prompt", 3, True), ("image", 11, False),
    ]


async def test_ask_defers_at_once_and_streams_the_answer_into_the_response(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    text = " ".join(f"step{i}" for i in range(30)) + " @everyone"
    model_server.reply(text, tokens_per_s=20)
    model_server.reply("You asked about steps.")
    async with start_bot(discord_server, model_server, tmp_path):
        record = await discord_server.invoke_command(
            "ask", {"prompt": "list the steps"},
            attachments={"image": Upload("chart.jpg", jpeg(3000, 1000), "image/jpeg")},
        )
        await final_text(discord_server, record, text)
        assert deferred_in_time(record)
        assert record.callbacks[0]["type"] == 5  # deferred: "is thinking…"
        # Replying to the /ask answer in the channel continues that conversation.
        answer = discord_server.interaction_messages(record)[0]
        follow = await discord_server.user_says(
            discord_server.channel_id(), "what did I ask?", mentions_bot=False,
            reply_to=answer["id"],
        )
        await answer_to(discord_server, follow, "You asked about steps.")
    writes = [w for w in discord_server.writes if w.kind == "original"]
    assert len(writes) >= 2, "the answer streams in by edits of the response"
    assert all(w.allowed_mentions and w.allowed_mentions["parse"] == [] for w in writes)
    [url] = image_urls(model_server.requests[0].body)
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size[0] <= 2048 and sent.size[0] > sent.size[1]
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "list the steps" in seen and "step29" in seen


async def test_reset_in_a_thread_starts_afresh(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Noted: the password is swordfish.")
    model_server.reply("I don't know any password.")
    async with start_bot(discord_server, model_server, tmp_path, DISCORD_AUTO_THREAD=True):
        said = await discord_server.user_says(discord_server.channel_id(), "remember swordfish")
        await discord_server.until(
            lambda: bool(discord_server.bot_messages(said))  # the thread has the message's id
        )
        record = await discord_server.invoke_command("reset", channel_id=said)
        assert "Fresh start" in await response_text(discord_server, record)
        assert deferred_in_time(record)
        assert record.callbacks[0]["data"]["flags"] & 64, "only the user sees it"
        follow = await discord_server.user_says(said, "what is the password?", mentions_bot=False)
        await answer_to(discord_server, follow, "I don't know any password.")
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "swordfish" not in seen


async def test_reset_in_a_channel_stops_older_chains_from_continuing(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Got it, secret plan A.")
    model_server.reply("Starting over.")
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        first = await discord_server.user_says(channel, "our secret is plan A")
        answer = await answer_to(discord_server, first, "Got it, secret plan A.")
        record = await discord_server.invoke_command("reset")
        assert "Fresh start" in await response_text(discord_server, record)
    async with start_bot(discord_server, model_server, tmp_path):  # a restart keeps it
        later = await discord_server.user_says(channel, "go on", reply_to=answer["id"])
        await answer_to(discord_server, later, "Starting over.")
    seen = "\n".join(seen_texts(model_server.requests[-1].body))
    assert "our secret is plan A" not in seen, "the old chain's history is not continued"
    assert "Got it, secret plan A." in seen, "the message replied to is quoted"


async def test_model_offers_configured_models_and_only_admins_may_change_it(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.models.append("openai/gpt-5.4")
    extra: dict[str, Any] = {"DISCORD_MODELS": "openai/gpt-5.4,acme/other-model"}
    async with start_bot(discord_server, model_server, tmp_path, **extra):
        choices = await discord_server.autocomplete("model", {"name": "gpt"}, focused="name")
        assert [c["value"] for c in choices] == ["openai/gpt-5.4-mini", "openai/gpt-5.4"]

        denied = await discord_server.invoke_command("model", {"name": "openai/gpt-5.4"})
        assert "Only server admins" in await response_text(discord_server, denied)
        said = await discord_server.user_says(discord_server.channel_id(), "which model?")
        await discord_server.until(lambda: bool(replies_to(discord_server, said)))

        allowed = await discord_server.invoke_command(
            "model", {"name": "openai/gpt-5.4"}, author="root"
        )
        assert "now uses `openai/gpt-5.4`" in await response_text(discord_server, allowed)
        assert deferred_in_time(denied) and deferred_in_time(allowed)
        again = await discord_server.user_says(discord_server.channel_id(), "and now?")
        await discord_server.until(lambda: bool(replies_to(discord_server, again)))
    async with start_bot(discord_server, model_server, tmp_path, **extra):  # redeployed
        shown = await discord_server.invoke_command("model")
        assert "This channel uses `openai/gpt-5.4`" in await response_text(discord_server, shown)
        later = await discord_server.user_says(discord_server.channel_id(), "still?")
        await discord_server.until(lambda: bool(replies_to(discord_server, later)))
    assert [r.body["model"] for r in model_server.requests] == [
        "openai/gpt-5.4-mini", "openai/gpt-5.4", "openai/gpt-5.4"]


async def test_model_in_a_thread_names_the_model_that_answers_there(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.models.append("openai/gpt-5.4")
    general = discord_server.channel_id("general")
    thread = discord_server.add_thread("help", parent=general)
    async with start_bot(discord_server, model_server, tmp_path,
                         DISCORD_MODELS="openai/gpt-5.4"):
        chosen = await discord_server.invoke_command(
            "model", {"name": "openai/gpt-5.4"}, channel_id=general, author="root"
        )
        await response_text(discord_server, chosen)
        shown = await discord_server.invoke_command("model", channel_id=thread)
        text = await response_text(discord_server, shown)
        said = await discord_server.user_says(thread, "which model?")
        await discord_server.until(lambda: bool(replies_to(discord_server, said)))
    assert model_server.requests[0].body["model"] == "openai/gpt-5.4"
    assert "uses `openai/gpt-5.4`" in text, "/model says what the thread's replies use"


async def test_a_model_choice_the_database_refuses_is_reported_and_not_applied(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.models.append("openai/gpt-5.4")
    extra: dict[str, Any] = {"DISCORD_MODELS": "openai/gpt-5.4"}
    async with start_bot(discord_server, model_server, tmp_path, **extra) as running:
        store = running.core.store
        assert isinstance(store, SQLiteStore)
        await store._db.execute("PRAGMA query_only = ON")  # the file turned read-only
        refused = await discord_server.invoke_command(
            "model", {"name": "openai/gpt-5.4"}, author="root"
        )
        text = await response_text(discord_server, refused)
        await store._db.execute("PRAGMA query_only = OFF")
        said = await discord_server.user_says(discord_server.channel_id(), "which model?")
        await discord_server.until(lambda: bool(replies_to(discord_server, said)))
    assert text.startswith("⚠️ I couldn't save the model choice, so nothing changed: "
                           "the database is read-only")
    assert model_server.requests[-1].body["model"] == "openai/gpt-5.4-mini"


async def test_usage_reports_your_tokens_today_and_the_channels(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Counted.", usage={"prompt_tokens": 1000, "completion_tokens": 234})
    model_server.reply("Also counted.", usage={"prompt_tokens": 500, "completion_tokens": 66})
    async with start_bot(discord_server, model_server, tmp_path) as running:
        channel = discord_server.channel_id()
        mine = await discord_server.user_says(channel, "count me")
        await answer_to(discord_server, mine, "Counted.")
        bobs = await discord_server.user_says(channel, "count bob", author="bob")
        await answer_to(discord_server, bobs, "Also counted.")
        await usage_reaches(running, 1800, channel=channel)
        record = await discord_server.invoke_command("usage")
        text = await response_text(discord_server, record)
    assert deferred_in_time(record)
    assert "you've used **1,234** tokens" in text
    assert "This channel: **1,800** tokens" in text
    assert record.callbacks[0]["data"]["flags"] & 64
