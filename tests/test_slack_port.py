"""How replies reach Slack: native streams, chat.update fallbacks, statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.files import FileHostPolicy, SlackFileFetcher
from adapters.slack.port import SlackChatPort
from adapters.slack.rate import SlackRateGate
from core.types import ThreadKey
from tests.fakes.slack_server import SlackServer

KEY = ThreadKey("slack", "T0TEAM", "C0GENERAL", "1700000000.000001")
DM = ThreadKey("slack", "T0TEAM", "D0ALICE", "1700000000.000002")
ASK = KEY.root  # Alice's mention, which started the thread: replies answer it


@pytest.fixture
async def port(slack_server: SlackServer) -> AsyncIterator[SlackChatPort]:
    client = AsyncWebClient(token=slack_server.cfg.bot_token, base_url=slack_server.api_url)
    async with httpx.AsyncClient() as http:
        files = SlackFileFetcher(slack_server.cfg.bot_token, FileHostPolicy(()), http)
        p = SlackChatPort(client, files, gate=SlackRateGate(), stream_idle_s=0.3)
        p.remember_requester(KEY, ASK, "U0ALICE", "T0TEAM")
        yield p
        await p.aclose()


def _methods(slack: SlackServer) -> list[str]:
    return [c.method for c in slack.calls]


async def test_a_reply_streams_natively_and_ends_with_the_full_text(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    ts = await port.post(KEY, "Hello", reply_to=ASK)
    await port.edit(KEY, ts, "Hello wor")
    await port.edit(KEY, ts, "Hello world, how")
    await port.finish(KEY, ts, "Hello world, how are you?")
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert msg.text == "Hello world, how are you?"
    assert not msg.streaming and msg.appends == 2
    assert _methods(slack_server) == [
        "chat.startStream", "chat.appendStream", "chat.appendStream", "chat.stopStream"
    ]
    start = slack_server.calls_to("chat.startStream")[0].params
    assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U0ALICE", "T0TEAM")
    assert start["thread_ts"] == KEY.root


async def test_a_code_block_closed_only_for_display_still_streams(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    # The core closes an open fence for display mid-stream; a stream cannot take it back.
    ts = await port.post(KEY, "Try:\n```py\nprint(1)\n```", reply_to=ASK)
    await port.edit(KEY, ts, "Try:\n```py\nprint(1)\nprint(2)\n```")
    await port.finish(KEY, ts, "Try:\n```py\nprint(1)\nprint(2)\n```\nDone.")
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert msg.text == "Try:\n```py\nprint(1)\nprint(2)\n```\nDone."
    assert "chat.update" not in _methods(slack_server)


async def test_a_rewritten_text_ends_the_stream_and_continues_by_update(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    ts = await port.post(KEY, "First draft that is long", reply_to=ASK)
    await port.finish(KEY, ts, "First draft")  # the core cut the part shorter
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert msg.text == "First draft" and not msg.streaming
    update = slack_server.calls_to("chat.update")[-1].params
    assert update["markdown_text"] == "First draft" and "text" not in update


async def test_an_expired_stream_falls_back_to_chat_update_on_the_same_message(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    slack_server.cfg.stream_expiry_s = 0.1
    ts = await port.post(KEY, "Part one", reply_to=ASK)
    await asyncio.sleep(0.15)
    await port.edit(KEY, ts, "Part one, part two")
    await port.finish(KEY, ts, "Part one, part two, the end.")
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert msg.ts == ts and msg.text == "Part one, part two, the end."
    errors = [c.error for c in slack_server.calls if c.error]
    assert errors == ["message_not_in_streaming_state"]
    assert [c.method for c in slack_server.calls[-2:]] == ["chat.update", "chat.update"]


async def test_a_long_replys_next_part_streams_to_the_same_person(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    port.remember_requester(KEY, "1700000000.000005", "U0BOB", "T0TEAM")  # Bob spoke later
    first = await port.post(KEY, "Part one", reply_to=ASK)
    await port.finish(KEY, first, "Part one, full.")
    second = await port.post(KEY, "Part two", reply_to=first)  # the core chains parts
    await port.finish(KEY, second, "Part two, full.")
    parts = slack_server.bot_replies(KEY.channel, KEY.root)
    assert [(m.text, m.kind, m.recipient) for m in parts] == [
        ("Part one, full.", "stream", "U0ALICE"), ("Part two, full.", "stream", "U0ALICE"),
    ]


async def test_without_a_known_requester_a_channel_reply_is_posted_and_updated(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    other = ThreadKey("slack", "T0TEAM", "C0OTHER", "1700000000.000009")
    ts = await port.post(other, "Hi")
    await port.finish(other, ts, "Hi there")
    post = slack_server.calls_to("chat.postMessage")[0].params
    assert post["markdown_text"] == "Hi" and post["thread_ts"] == other.root
    assert post["unfurl_links"] is False and post["unfurl_media"] is False
    assert slack_server.bot_text(other.channel, other.root) == "Hi there"
    assert "chat.startStream" not in _methods(slack_server)


async def test_dms_stream_without_a_recipient(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    ts = await port.post(DM, "Hi")
    await port.finish(DM, ts, "Hi!")
    assert slack_server.bot_text(DM.channel, DM.root) == "Hi!"
    assert "recipient_user_id" not in slack_server.calls_to("chat.startStream")[0].params


async def test_a_workspace_that_refuses_streaming_is_asked_only_once(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    slack_server.cfg.disabled_methods.add("chat.startStream")
    for text in ("one", "two"):
        ts = await port.post(KEY, text, reply_to=ASK)
        await port.finish(KEY, ts, text + "!")
    assert [m.text for m in slack_server.bot_replies(KEY.channel, KEY.root)] == ["one!", "two!"]
    assert len(slack_server.calls_to("chat.startStream")) == 1


async def test_a_post_never_finished_stops_streaming_by_itself(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    await port.post(KEY, "⚠️ Sorry, I couldn't answer: model unavailable", reply_to=ASK)
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert msg.streaming
    await slack_server.wait_until(lambda: not msg.streaming, timeout_s=3)
    assert msg.text.startswith("⚠️ Sorry")


async def test_a_stream_left_open_by_a_dead_process_can_still_be_finalised(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    client = AsyncWebClient(token=slack_server.cfg.bot_token, base_url=slack_server.api_url)
    async with httpx.AsyncClient() as http:
        files = SlackFileFetcher(slack_server.cfg.bot_token, FileHostPolicy(()), http)
        before_restart = SlackChatPort(client, files, gate=SlackRateGate())
        before_restart.remember_requester(KEY, ASK, "U0ALICE", "T0TEAM")
        ts = await before_restart.post(KEY, "Half an answ", reply_to=ASK)
    await port.finish(KEY, ts, "Half an answ\n\n⚠️ _This reply was interrupted._")
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert not msg.streaming and msg.text.endswith("interrupted._")


async def test_status_is_shown_and_cleared_and_degrades_silently(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    await port.set_status(KEY, "is thinking…")
    assert slack_server.status(KEY.channel, KEY.root) == "is thinking…"
    await port.set_status(KEY, None)
    assert slack_server.status(KEY.channel, KEY.root) == ""
    slack_server.cfg.disabled_methods.add("assistant.threads.setStatus")
    await port.set_status(DM, "is thinking…")
    await port.set_status(DM, None)
    await port.set_status(KEY, "is thinking…")
    assert len(slack_server.calls_to("assistant.threads.setStatus")) == 3


async def test_what_the_model_writes_cannot_ping_the_channel(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    ts = await port.post(KEY, "Alert <!channel>", reply_to=ASK)
    await port.finish(KEY, ts, "Alert <!channel> and <@U0BOB>, @here <!subteam^S1|@devs>")
    assert slack_server.pings(KEY.channel, KEY.root) == []
    assert "Alert" in slack_server.bot_text(KEY.channel, KEY.root)


async def test_a_complete_reply_is_one_chat_post_message_without_a_stream(
    slack_server: SlackServer, port: SlackChatPort
) -> None:
    # A reply that waited for a live slot is posted whole: a stream would cost a
    # Tier 2 chat.startStream and chat.stopStream for nothing.
    ts = await port.post(KEY, "The whole answer.", reply_to=ASK, final=True)
    await port.finish(KEY, ts, "The whole answer.")
    [msg] = slack_server.bot_replies(KEY.channel, KEY.root)
    assert msg.text == "The whole answer." and not msg.streaming
    assert _methods(slack_server) == ["chat.postMessage"]
