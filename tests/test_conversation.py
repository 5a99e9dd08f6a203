"""Conversations through the real core: fake model server over a socket, real SQLite file."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
from pathlib import Path

import pytest
from PIL import Image

from bots.compose import open_core
from core.store.errors import StoreUnavailable
from core.types import StoredMessage, ThreadKey
from tests.fakes.bad_files import jpeg
from tests.fakes.chat_port import Conversation, MemoryPort, settings_for
from tests.fakes.model_requests import image_urls, seen_texts
from tests.fakes.model_server import FakeModelServer


async def test_reply_streams_in_over_several_writes(conversation: Conversation) -> None:
    text = " ".join(f"word{i}" for i in range(60))
    conversation.model.reply(text, tokens_per_s=200)
    shown = await conversation.say("tell me something")
    assert shown == text
    edits = [w for w in conversation.port.writes if w.kind in ("post", "edit")]
    assert len(edits) >= 3, "the reply should appear progressively, not in one write"
    assert edits[0].text != text


async def test_follow_up_sees_history_with_speakers(conversation: Conversation) -> None:
    conversation.model.reply("Nice to meet you, Bob.")
    await conversation.say("my name is Bob", author="Bob")
    conversation.model.reply("You are Bob.")
    assert await conversation.say("what is my name?", author="Bob") == "You are Bob."
    seen = "\n".join(seen_texts(conversation.model.requests[-1].body))
    assert "my name is Bob" in seen and "Nice to meet you, Bob." in seen
    assert "Bob" in seen.split("my name is Bob")[0][-40:], "the speaker is labelled"


async def test_image_reaches_the_model_as_a_downscaled_data_url(
    conversation: Conversation,
) -> None:
    conversation.model.reply("A red rectangle.")
    await conversation.say("what is this?", files={"photo.jpg": jpeg(4000, 3000)})
    (url,) = image_urls(conversation.model.requests[-1].body)
    assert url.startswith("data:image/")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(sent.size) <= 2048 and sent.size[0] > sent.size[1]
    # A later turn re-sends byte-identical image bytes (stable, cacheable prefix).
    conversation.model.reply("Still red.")
    await conversation.say("and now?")
    assert image_urls(conversation.model.requests[-1].body) == [url]


async def test_pdf_reaches_the_model(conversation: Conversation) -> None:
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    conversation.model.reply("It is a tiny PDF.")
    await conversation.say("summarise", files={"report.pdf": pdf})
    parts = [
        p for m in conversation.model.requests[-1].body["messages"]
        if isinstance(m.get("content"), list) for p in m["content"] if p.get("type") == "file"
    ]
    assert len(parts) == 1
    assert parts[0]["file"]["filename"] == "report.pdf"
    assert base64.b64decode(parts[0]["file"]["file_data"].split(",", 1)[1]) == pdf


async def test_bad_media_is_refused_with_a_note_naming_each_file(
    conversation: Conversation,
) -> None:
    corrupt = jpeg(100, 100)[:300]
    conversation.model.reply("I read your message.")
    shown = await conversation.say(
        "look", files={"broken.jpg": corrupt, "archive.zip": b"PK\x03\x04" + b"\0" * 40,
                       "empty.png": b""},
    )
    assert "broken.jpg" in shown and "archive.zip" in shown and "empty.png" in shown
    assert "I read your message." in shown
    assert not image_urls(conversation.model.requests[-1].body)


async def test_mid_stream_failure_keeps_partial_text_with_a_marker(
    conversation: Conversation,
) -> None:
    conversation.model.fail_midstream("The first half of the answer", error_message="boom")
    shown = await conversation.say("go")
    assert shown.startswith("The first half of the answer")
    assert "cut off" in shown.lower()
    # History keeps what the user saw, and the next turn works.
    conversation.model.reply("Recovered.")
    assert await conversation.say("again?") == "Recovered."
    assert "The first half of the answer" in "\n".join(
        seen_texts(conversation.model.requests[-1].body)
    )


async def test_a_reply_the_content_filter_cut_short_says_so(
    conversation: Conversation,
) -> None:
    conversation.model.reply("Step one: take the", finish_reason="content_filter")
    shown = await conversation.say("how do I do it?")
    assert shown == (
        "Step one: take the\n\n⚠️ _The model's content filter stopped the reply here._")
    thread = await conversation.core.store.load_thread(conversation.key)
    assert (thread[-1].text, thread[-1].status) == ("Step one: take the", "partial")


async def test_wrapped_backend_error_shows_the_inner_reason(conversation: Conversation) -> None:
    inner = "Unsupported parameter: 'foo' is not supported with this model."
    conversation.model.fail(400, {"error": {
        "message": "Backend request failed with status 400", "type": "backend_error",
        "code": 400, "details": {"error": {"message": inner, "type": "invalid_request_error",
                                           "param": "foo", "code": "unsupported_parameter"}},
    }})
    shown = await conversation.say("hi")
    assert inner in shown
    assert "couldn't answer" in shown


async def test_a_redelivered_message_gets_one_reply(conversation: Conversation) -> None:
    conversation.model.reply("Only once.")
    await conversation.say("hello", message_id="same-id")
    shown = await conversation.say("hello", message_id="same-id")
    assert shown == ""
    assert len(conversation.model.requests) == 1


async def test_tool_call_round_trip(model_server: FakeModelServer, tmp_path: Path) -> None:
    settings = settings_for(model_server, tmp_path / "t.db", MODEL_TOOLS="current_time")
    async with open_core(settings) as core:
        convo = Conversation(core, MemoryPort(), model_server)
        model_server.reply("", tool_calls=[{"id": "call_1", "name": "current_time",
                                            "arguments": json.dumps({"timezone": "UTC"})}])
        model_server.reply("It is late.")
        assert await convo.say("what time is it?") == "It is late."
        second = model_server.requests[-1].body["messages"]
        tool_msgs = [m for m in second if m["role"] == "tool"]
        assert tool_msgs and tool_msgs[0]["tool_call_id"] == "call_1"
        thread = await core.store.load_thread(convo.key)
        assert thread[-1].tools and thread[-1].tools[0].name == "current_time"


async def test_responses_api_conversation(model_server: FakeModelServer, tmp_path: Path) -> None:
    settings = settings_for(model_server, tmp_path / "t.db", MODEL_API="responses")
    async with open_core(settings) as core:
        convo = Conversation(core, MemoryPort(), model_server)
        model_server.reply("Hello from Responses.")
        assert await convo.say("hi") == "Hello from Responses."
        assert model_server.requests[-1].path.endswith("/responses")


async def test_budget_drops_oldest_turns_and_keeps_the_prefix_stable(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = settings_for(
        model_server, tmp_path / "t.db", MODEL_CONTEXT_TOKENS=3000,
        MODEL_MAX_COMPLETION_TOKENS=200,
    )
    async with open_core(settings) as core:
        convo = Conversation(core, MemoryPort(), model_server)
        bodies = []
        for turn in range(30):
            model_server.reply(f"answer {turn} " + "lorem ipsum " * 20)
            await convo.say(f"question {turn} " + "dolor sit amet " * 20)
            bodies.append(model_server.requests[-1].body["messages"])
        first = seen_texts({"messages": bodies[-1]})
        assert not any("question 0 " in t for t in first), "the oldest turn was dropped"
        assert any("question 29" in t for t in first), "the newest turn is kept"
        stable = 0
        for before, after in itertools.pairwise(bodies):
            # The previous request minus its last (per-turn) message is a prefix of the next.
            if after[: len(before) - 1] == before[:-1]:
                stable += 1
        assert stable >= 20, f"prefix stayed stable on only {stable} of 29 turns"


async def test_a_follow_up_while_the_database_is_down_is_left_alone_until_it_is_back(
    conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation.model.reply("Noted.")
    await conversation.say("remember 42")
    store = conversation.core.store
    working = store.load_thread

    async def unreachable(key: ThreadKey) -> list[StoredMessage]:
        raise StoreUnavailable("could not connect to the database")

    monkeypatch.setattr(store, "load_thread", unreachable)
    # Without a mention the bot answers only in its own threads, which it cannot check now:
    # it must neither crash nor post an error where it may not belong.
    assert await conversation.say("what was it?", message_id="f1", addressed=False) == ""
    assert len(conversation.model.requests) == 1

    monkeypatch.setattr(store, "load_thread", working)
    conversation.model.reply("It was 42.")  # Slack's retry of the same message is answered
    assert await conversation.say("what was it?", message_id="f1", addressed=False) == (
        "It was 42.")


async def test_a_follow_up_sent_while_the_first_question_is_still_being_read_is_answered(
    conversation: Conversation,
) -> None:
    # Alice asks about a photo; the download takes a moment, and she adds a second line
    # (no mention) before the bot has stored anything of the thread.
    conversation.port.fetch_delay_s = 0.6
    conversation.model.reply("A small square photo.")
    conversation.model.reply("It is red.")
    first = asyncio.create_task(
        conversation.say("what is this?", files={"photo.jpg": jpeg(64, 64)})
    )
    await conversation.port.fetching.wait()  # the first turn is reading the photo
    second = await conversation.say("and what colour is it?", addressed=False)

    assert "A small square photo." in await first
    assert "It is red." in second
    assert list(conversation.port.messages.values()) == ["A small square photo.", "It is red."]
    assert any("what is this?" in t for t in seen_texts(conversation.model.requests[1].body))


async def test_a_turn_that_fails_while_reading_files_is_not_later_called_a_restart(
    conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = conversation.core.store

    async def locked(media: object) -> None:
        raise StoreUnavailable("the database is locked")

    monkeypatch.setattr(store, "put_media", locked)
    failed = await conversation.say("what is this?", files={"photo.jpg": jpeg(64, 64)})
    assert "⚠️" in failed and "database" in failed, failed
    assert conversation.model.requests == []

    monkeypatch.undo()
    conversation.model.reply("Ask me anything.")
    # The next turn finds no orphan: nothing says the bot restarted.
    assert await conversation.say("are you there?") == "Ask me anything."
    history = await store.load_thread(conversation.key)
    assert [(m.role, m.status, m.text) for m in history] == [
        ("user", "complete", "what is this?"), ("assistant", "failed", ""),
        ("user", "complete", "are you there?"), ("assistant", "complete", "Ask me anything."),
    ]
