"""Events API deliveries: signatures, retries, duplicates, health and metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from adapters.slack.bot import SlackBot
from bots.compose import open_core
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_events import user_message
from tests.fakes.slack_faults import DROP_AFTER
from tests.fakes.slack_harness import bot_settings, running_bot
from tests.fakes.slack_server import SlackServer

CHANNEL = "C0GENERAL"


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_a_bad_or_stale_signature_is_rejected_and_never_reaches_the_model(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with running_bot(slack_server, model_server, tmp_path) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
        tampered = await slack_server.deliver(bot.url, post.events[-1], tamper=True)
        stale = await slack_server.deliver(bot.url, post.events[-1], age_s=600)
        slack_server.signing_secret = "not-the-secret"
        forged = await slack_server.deliver(bot.url, post.events[-1])
        await bot.idle()
    assert (tampered.status, stale.status, forged.status) == (401, 401, 401)
    assert model_server.requests == []
    assert slack_server.bot_replies(CHANNEL, post.ts) == []


async def test_duplicates_retries_and_message_plus_mention_give_exactly_one_reply(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("The one and only answer.", ttft_s=0.5)
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} once please")
        message, mention = post.events
        first = await slack_server.deliver(bot.url, mention)
        deliveries = await asyncio.gather(
            slack_server.deliver(bot.url, message),
            slack_server.deliver(bot.url, mention, retry_num=1),
            slack_server.deliver(bot.url, mention, retry_num=2),
        )
        # Retries were acknowledged while the answer was still being written.
        assert len(bot.tasks) == 1 and slack_server.bot_replies(CHANNEL, post.ts) == []
        await bot.idle()
    assert [d.status for d in (first, *deliveries)] == [200, 200, 200, 200]
    assert len(model_server.requests) == 1
    [reply] = slack_server.bot_replies(CHANNEL, post.ts)
    assert reply.text == "The one and only answer."


async def test_a_retry_after_a_restart_is_deduplicated_by_the_store(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hello")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        await slack_server.deliver(bot.url, post.events[-1])
        await bot.idle()
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        retry = await slack_server.deliver(bot.url, post.events[-1], retry_num=1)
        await bot.idle()
    assert retry.status == 200
    assert len(model_server.requests) == 1 and len(slack_server.bot_replies(CHANNEL, post.ts)) == 1


async def test_only_allowed_channels_are_answered(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           SLACK_ALLOWED_CHANNELS="C0ALLOWED") as bot:
        denied = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
        allowed = slack_server.user_post("C0ALLOWED", "U0ALICE", f"{slack_server.mention} hi")
        for event in denied.events + allowed.events:
            assert (await slack_server.deliver(bot.url, event)).status == 200
        await bot.idle()
    [note] = slack_server.bot_replies(CHANNEL, denied.ts)
    assert "not enabled here" in note.text and "<#C0ALLOWED>" in note.text
    assert len(model_server.requests) == 1  # only the allowed channel reached the model
    assert len(slack_server.bot_replies("C0ALLOWED", allowed.ts)) == 1


async def test_a_not_enabled_note_whose_answer_was_lost_is_not_said_twice(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           SLACK_ALLOWED_CHANNELS="C0ALLOWED") as bot:
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage"})
        denied = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
        for event in denied.events:
            assert (await slack_server.deliver(bot.url, event)).status == 200
        await bot.idle()
    assert ("chat.postMessage", DROP_AFTER) in slack_server.faults.answered
    [note] = slack_server.bot_replies(CHANNEL, denied.ts)  # a courtesy note: not resent
    assert "not enabled here" in note.text


async def test_outside_the_allowed_channels_people_who_ask_are_told_once_where_to_go(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "slack"
    assistant = json.loads((fixtures / "assistant_thread_started.json").read_text())
    home = slack_server.wrap_event({"type": "app_home_opened", "user": "U0ALICE",
                                    "channel": "D0ALICE", "tab": "messages", "event_ts": "1.2"})
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           SLACK_ALLOWED_CHANNELS="C0ALLOWED,C0HELP") as bot:
        # DMs are not allowed: no greeting or suggested prompts invite Alice to ask there.
        for event in (home, assistant):
            assert (await slack_server.deliver(bot.url, event)).status == 200
        await bot.idle()
        assert slack_server.calls_to("chat.postMessage") == []
        assert slack_server.state.suggested_prompts == {}
        dm = slack_server.user_post("D0ALICE", "U0ALICE", "hello bot", channel_type="im")
        mention = slack_server.user_post(CHANNEL, "U0BOB", f"{slack_server.mention} hi")
        again = slack_server.user_post(CHANNEL, "U0BOB", f"{slack_server.mention} hello??",
                                       thread_ts=mention.ts)
        chatter = slack_server.user_post(CHANNEL, "U0BOB", "lunch anyone?")
        for post in (dm, mention, again, chatter):
            for event in post.events:
                assert (await slack_server.deliver(bot.url, event)).status == 200
        await slack_server.deliver(bot.url, mention.events[-1], retry_num=1)
        await bot.idle()
    assert model_server.requests == []
    [dm_note] = slack_server.bot_replies("D0ALICE", dm.ts)
    [channel_note] = slack_server.bot_replies(CHANNEL, mention.ts)  # once for the thread
    for note in (dm_note, channel_note):
        assert note.text == ("I'm not enabled here, so I can't answer. "
                             "You can mention me in <#C0ALLOWED>, <#C0HELP>.")
    assert slack_server.pings(CHANNEL, mention.ts) == []
    assert slack_server.bot_replies(CHANNEL, chatter.ts) == []  # not addressed: silence


async def test_healthz_is_503_until_slack_is_reached_then_200(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack_server.cfg.delays["auth.test"] = 0.5
    settings = bot_settings(slack_server, model_server, tmp_path / "tw.db")
    async with open_core(settings) as core:
        bot = SlackBot(settings, core.service, registry=core.metrics.registry,
                       host="127.0.0.1", port=0)
        starting = asyncio.create_task(bot.start())
        try:
            await slack_server.wait_until(lambda: bot.surface is not None and bot.surface.port > 0)
            status, _, body = await _get(bot.url + "/healthz")
            assert (status, json.loads(body)["status"]) == (503, "starting")
            early = await slack_server.deliver(bot.url, slack_server.user_post(
                CHANNEL, "U0ALICE", f"{slack_server.mention} too early").events[-1])
            assert early.status == 503  # Slack will retry it
            await starting
            status, _, body = await _get(bot.url + "/healthz")
            assert (status, json.loads(body)["status"]) == (200, "ok")
        finally:
            await bot.aclose()


async def test_metrics_are_prometheus_text_with_slack_and_core_series(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
        await slack_server.deliver(bot.url, post.events[-1])
        await slack_server.deliver(bot.url, post.events[-1], tamper=True)
        await bot.idle()
        status, content_type, text = await _get(bot.url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'threadwise_slack_deliveries_total{retry="no",status="200"} 1.0' in text
    assert 'threadwise_slack_deliveries_total{retry="no",status="401"} 1.0' in text
    assert 'threadwise_turns_total{outcome="answered",platform="slack"} 1.0' in text
    assert "threadwise_slack_turns_in_flight 0.0" in text


async def test_a_new_assistant_thread_gets_suggested_prompts(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    event = json.loads(
        (Path(__file__).parent / "fixtures" / "slack" / "assistant_thread_started.json").read_text()
    )
    async with running_bot(slack_server, model_server, tmp_path) as bot:
        assert (await slack_server.deliver(bot.url, event)).status == 200
        await bot.idle()
    prompts = slack_server.state.suggested_prompts[("D0ALICE", "1718000300.000900")]
    assert len(prompts) >= 2 and all(p["title"] and p["message"] for p in prompts)


async def test_edits_deletions_and_other_bots_are_not_answered(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "slack"
    async with running_bot(slack_server, model_server, tmp_path) as bot:
        for name in ("message_changed", "message_deleted", "bot_message", "own_reply"):
            payload = json.loads((fixtures / f"{name}.json").read_text())
            payload["event"]["channel"] = CHANNEL
            assert (await slack_server.deliver(bot.url, payload)).status == 200
        edited_dm = slack_server.wrap_event(user_message(
            team="T0TEAM", channel="D0ALICE", user="U0ALICE", text="x", ts="1.000001",
            channel_type="im",
        ) | {"subtype": "message_changed"})
        assert (await slack_server.deliver(bot.url, edited_dm)).status == 200
        await bot.idle()
    assert model_server.requests == []
    assert not [c for c in slack_server.calls if c.method.startswith("chat.")]


async def test_opening_the_messages_tab_offers_prompts_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    def home(tab: str) -> dict[str, object]:
        return slack_server.wrap_event({"type": "app_home_opened", "user": "U0ALICE",
                                        "channel": "D0ALICE", "tab": tab, "event_ts": "1.2"})

    async with running_bot(slack_server, model_server, tmp_path) as bot:
        for tab in ("home", "messages", "messages"):
            assert (await slack_server.deliver(bot.url, home(tab))).status == 200
            await bot.idle()
    posts = [c for c in slack_server.calls if c.method == "chat.postMessage"]
    assert len(posts) == 1, "greeted once, and only for the Messages tab"
    assert posts[0].params["channel"] == "D0ALICE"
    assert "Summarize a discussion" in str(posts[0].params["markdown_text"])
    assert model_server.requests == []
