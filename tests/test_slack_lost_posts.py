"""Slack posts whose answer was lost (a reset, a timeout, a 5xx): never shown twice,
never left "streaming", and never confused with another message in the thread.

The port with the two clients the bot builds (one resending lost calls, one not), and
the whole bot, against the Slack emulator's faults.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapters.slack import lost_posts
from adapters.slack.bot import web_client
from adapters.slack.files import FileHostPolicy, SlackFileFetcher
from adapters.slack.metrics import SlackMetrics
from adapters.slack.port import SlackChatPort
from adapters.slack.rate import SlackRateGate
from adapters.slack.summary import SHORTCUT_ID
from core.types import ThreadKey
from tests.fakes.fault_harness import CHANNEL, slack_rig
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_faults import DROP, DROP_AFTER
from tests.fakes.slack_harness import bot_settings
from tests.fakes.slack_server import SlackServer
from tests.fakes.slack_state import Message

FIRST = "The first answer. " * 8
SECOND = "The second answer. " * 8


@pytest.fixture
async def rig(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> AsyncIterator[tuple[SlackChatPort, ThreadKey, str]]:
    settings = bot_settings(slack_server, model_server, tmp_path / "t.db")
    metrics = SlackMetrics(CollectorRegistry())
    client = web_client(settings, metrics)
    posts = web_client(settings, metrics, resend_lost=False)
    ask = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
    key = ThreadKey("slack", "T0TEAM", CHANNEL, ask.ts)
    async with httpx.AsyncClient() as http:
        files = SlackFileFetcher(slack_server.cfg.bot_token, FileHostPolicy(()), http)
        port = SlackChatPort(client, files, gate=SlackRateGate(speed=10), stream_idle_s=30,
                             posts=posts)
        port.lost.bot_id = slack_server.cfg.bot_id
        port.remember_requester(key, ask.ts, "U0ALICE", "T0TEAM")
        yield port, key, ask.ts
        await port.aclose()


async def test_an_adopted_lost_stream_finished_with_the_text_it_started_with_is_stopped(
    slack_server: SlackServer, rig: tuple[SlackChatPort, ThreadKey, str]
) -> None:
    """The streamer posts (final=False), the model ends while the post is in flight
    with no more text, so finish() carries the text the post started with."""
    port, key, ask = rig
    slack_server.faults.add(DROP_AFTER, 1, methods={"chat.startStream"})
    ts = await port.post(key, "Yes.", reply_to=ask)
    await port.finish(key, ts, "Yes.")
    [msg] = slack_server.bot_replies(CHANNEL, key.root)
    assert ("chat.startStream", DROP_AFTER) in slack_server.faults.answered
    assert msg.text == "Yes."
    assert not msg.streaming, "adopted message left in 'streaming' state"


async def test_one_5xx_on_stop_stream_does_not_leave_the_message_streaming(
    slack_server: SlackServer, rig: tuple[SlackChatPort, ThreadKey, str]
) -> None:
    """finish() with nothing new to add: one 500 on chat.stopStream (not carried out)."""
    port, key, ask = rig
    ts = await port.post(key, "Hello", reply_to=ask)
    await port.edit(key, ts, "Hello world")
    slack_server.faults.add(500, 1, methods={"chat.stopStream"})
    await port.finish(key, ts, "Hello world")
    [msg] = slack_server.bot_replies(CHANNEL, key.root)
    assert ("chat.stopStream", 500) in slack_server.faults.answered
    assert msg.text == "Hello world"
    assert not msg.streaming, "one 5xx on stopStream left the reply 'streaming'"


async def test_one_5xx_on_append_stream_keeps_the_text_once(
    slack_server: SlackServer, rig: tuple[SlackChatPort, ThreadKey, str]
) -> None:
    port, key, ask = rig
    ts = await port.post(key, "Hello", reply_to=ask)
    slack_server.faults.add(500, 1, methods={"chat.appendStream"})
    await port.edit(key, ts, "Hello world")
    await port.edit(key, ts, "Hello world again")
    await port.finish(key, ts, "Hello world again.")
    [msg] = slack_server.bot_replies(CHANNEL, key.root)
    assert ("chat.appendStream", 500) in slack_server.faults.answered
    assert msg.text == "Hello world again." and not msg.streaming


async def test_a_429_on_post_message_through_the_posts_client_is_waited_out(
    slack_server: SlackServer, rig: tuple[SlackChatPort, ThreadKey, str]
) -> None:
    port, key, ask = rig
    slack_server.faults.add(429, 2, methods={"chat.postMessage", "chat.startStream"})
    ts = await port.post(key, "Done.", reply_to=ask, final=True)
    [msg] = slack_server.bot_replies(CHANNEL, key.root)
    assert msg.ts == ts and msg.text == "Done."



async def test_a_lost_post_is_recognised_in_the_form_slack_shows_its_markdown(
    slack_server: SlackServer, rig: tuple[SlackChatPort, ThreadKey, str]
) -> None:
    """Slack renders markdown_text: the fallback text shows a link as <target|label>,
    bold with single stars. The words, in order, still identify the lost post."""
    port, key, ask = rig
    sent = "**Restart** the pod, then see [the runbook](https://wiki.example/rb) for more."
    slack_server.state.add(Message(
        channel=CHANNEL, ts=slack_server.state.next_ts(), thread_ts=key.root,
        user=slack_server.cfg.bot_user_id, bot_id=slack_server.cfg.bot_id,
        text="*Restart* the pod, then see <https://wiki.example/rb|the runbook> for more.",
    ))
    [made] = slack_server.bot_replies(CHANNEL, key.root)
    assert await port.lost.find(key, ask, sent, since=time.time()) == made.ts
    other = "**Restart** the service instead."  # another text: not ours to adopt
    assert await port.lost.find(key, ask, other, since=time.time()) is None

# --- the whole bot ----------------------------------------------------------------

async def test_a_failed_post_does_not_adopt_the_reply_to_an_earlier_question(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """Two questions sent back to back in one thread; the second reply's chat.startStream
    gets a 503 (not carried out). The first reply is newer than the second question."""
    model_server.reply("Hello!")
    model_server.reply(FIRST, ttft_s=0.5, tokens_per_s=40)
    model_server.reply(SECOND, tokens_per_s=40)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        root = await rig.ask("hi")
        await rig.answered(root)
        q1 = await rig.ask("question one", thread_ts=root.ts)
        q2 = await rig.ask("question two", thread_ts=root.ts)
        # The first turn has opened its stream: the next startStream is the second turn's.
        await slack_server.wait_until(lambda: len(rig.replies(root)) == 2)
        slack_server.faults.add(503, 1, methods={"chat.startStream"})
        await slack_server.wait_until(lambda: len(model_server.requests) == 3, timeout_s=20)
        await rig.bot.idle()
        texts = [m.text.strip() for m in rig.replies(root)]
        history = await rig.history(root)
    assert ("chat.startStream", 503) in slack_server.faults.answered
    assert float(q2.ts) < float(rig.replies(root)[1].ts)  # reply 1 is newer than q2
    assert texts == ["Hello!", FIRST.strip(), SECOND.strip()], texts
    assert q1.ts != q2.ts and len({m.platform_id for m in history if m.role == "assistant"}) == 3


async def test_a_lost_post_in_a_busy_thread_is_not_posted_twice(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """People keep talking in the thread while the model thinks: the lost post is three
    pages of conversations.replies after the question (pages made small here)."""
    monkeypatch.setattr(lost_posts, "PAGE", 10)
    model_server.reply("Hello!")
    model_server.reply(FIRST, ttft_s=1.0, tokens_per_s=40)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        root = await rig.ask("hi")
        await rig.answered(root)
        q = await rig.ask("a question", thread_ts=root.ts)
        for i in range(25):  # chatter, not addressed to the bot (never delivered)
            slack_server.user_post(CHANNEL, "U0BOB", f"chatter {i}", thread_ts=root.ts)
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.startStream"})
        await slack_server.wait_until(lambda: len(model_server.requests) == 2)
        await rig.bot.idle()
        replies = [m for m in rig.replies(root) if float(m.ts) > float(q.ts)]
        history = await rig.history(root)
    assert ("chat.startStream", DROP_AFTER) in slack_server.faults.answered
    shown = [(m.text.strip()[:30], m.streaming) for m in replies]
    assert len(replies) == 1, shown
    assert [(m.role, m.status) for m in history][-1] == ("assistant", "complete")


async def test_one_5xx_on_stop_stream_at_the_end_of_a_reply_does_not_leave_it_streaming(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply(FIRST, tokens_per_s=40)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        slack_server.faults.add(500, 1, methods={"chat.stopStream"})
        post = await rig.ask("say it")
        await slack_server.wait_until(lambda: len(model_server.requests) == 1)
        await rig.bot.idle()
        [reply] = rig.replies(post)
        history = await rig.history(post)
    assert ("chat.stopStream", 500) in slack_server.faults.answered
    assert reply.text.strip() == FIRST.strip()
    assert [(m.role, m.status) for m in history][-1] == ("assistant", "complete")
    assert not reply.streaming, "the reply still shows as streaming"


async def test_an_adopted_lost_stream_whose_text_did_not_grow_is_not_left_streaming(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """The model says one line, then calls a tool and adds nothing: the reply's text
    when it finishes is the text its (lost, adopted) chat.startStream carried."""
    model_server.reply("Checking.", tool_calls=[{"id": "c1", "name": "current_time",
                                                 "arguments": "{}"}], tokens_per_s=2)
    model_server.reply("")
    async with slack_rig(slack_server, model_server, tmp_path, MODEL_TOOLS="current_time") as rig:
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.startStream"})
        post = await rig.ask("what time is it?")
        await slack_server.wait_until(lambda: len(model_server.requests) == 2)
        await rig.bot.idle()
        [reply] = rig.replies(post)
        history = await rig.history(post)
    assert ("chat.startStream", DROP_AFTER) in slack_server.faults.answered
    assert reply.text.strip() == "Checking."
    assert [(m.role, m.status) for m in history][-1] == ("assistant", "complete")
    assert not reply.streaming, "the adopted reply still shows as streaming"


async def test_a_lost_stream_is_not_confused_with_a_summary_posted_meanwhile(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """chat.startStream is carried out, its answer lost (DROP_AFTER, the case the change
    targets). While the bot looks for it (Slack is slow to answer conversations.replies),
    someone runs "Summarize thread" in the same thread: its "⏳ Summarizing…" notice is
    the newest bot message there."""
    model_server.reply("Hello!")
    model_server.reply(FIRST, tokens_per_s=20)
    model_server.respond_with(lambda body: "### Key points\n- People said hello [m1]")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        root = await rig.ask("hi")
        await rig.answered(root)
        slack_server.cfg.delays["conversations.replies"] = 1.0
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.startStream"})
        q = await rig.ask("question", thread_ts=root.ts)
        await slack_server.wait_until(lambda: len(rig.replies(root)) == 2)  # made, answer lost
        await slack_server.message_shortcut(rig.bot.url, callback_id=SHORTCUT_ID,
                                            channel=CHANNEL, ts=root.ts, user="U0CAROL")
        await slack_server.wait_until(lambda: len(model_server.requests) >= 3, timeout_s=20)
        await rig.bot.idle()
        after = [m for m in rig.replies(root) if float(m.ts) > float(q.ts)]
        history = await rig.history(root)
    shown = [(m.text.strip()[:40], m.streaming) for m in after]
    stored = [m.platform_id for m in history if m.role == "assistant"][-1]
    # The answer is in the message the stream made; the summary in its own message.
    assert len(after) == 2 and not any(m.streaming for m in after), shown
    assert after[0].text.strip() == FIRST.strip() and after[0].ts == stored, shown
    assert after[1].text.startswith("🧵"), shown


async def test_a_stream_slack_never_started_does_not_take_over_a_summary_notice(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """As above, but the connection resets before Slack carries chat.startStream out
    (DROP): no message was made. While the bot looks for one, someone runs "Summarize
    thread": the "⏳ Summarizing…" notice is then the only bot message newer than the
    question. It must not be taken for the lost answer: the answer is posted anew, and
    the notice becomes the summary, untouched by the answer."""
    model_server.reply("Hello!")
    model_server.reply(FIRST, tokens_per_s=20)
    model_server.respond_with(lambda body: "### Key points\n- People said hello [m1]")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        root = await rig.ask("hi")
        await rig.answered(root)
        slack_server.cfg.delays["conversations.replies"] = 1.5
        slack_server.faults.add(DROP, 1, methods={"chat.startStream"})
        mark = len(slack_server.calls)
        q = await rig.ask("question", thread_ts=root.ts)
        await slack_server.wait_until(
            lambda: ("chat.startStream", DROP) in slack_server.faults.answered)
        # The bot is now looking for the stream in the thread (Slack is slow to answer).
        await slack_server.message_shortcut(rig.bot.url, callback_id=SHORTCUT_ID,
                                            channel=CHANNEL, ts=root.ts, user="U0CAROL")
        await slack_server.wait_until(lambda: any(
            m.text.startswith("⏳") for m in rig.replies(root)))
        [notice] = [m for m in rig.replies(root) if m.text.startswith("⏳")]
        await slack_server.wait_until(lambda: len(model_server.requests) >= 3, timeout_s=20)
        await rig.bot.idle()
        after = [m for m in rig.replies(root) if float(m.ts) > float(q.ts)]
        history = await rig.history(root)
    # The path this test is about: the bot's lookup for the stream read the thread
    # once, after the notice was made, from before the notice.
    since_q = slack_server.calls[mark:]
    [made] = [c for c in since_q if c.method == "chat.postMessage"
              and c.params.get("markdown_text") == "⏳ Summarizing…"]
    [lookup] = [c for c in since_q if c.method == "conversations.replies"
                and c.params.get("oldest") == q.ts]
    assert lookup.at > made.at and float(lookup.params["oldest"]) < float(notice.ts)
    shown = [(m.text.strip()[:40], m.streaming) for m in after]
    stored = [m.platform_id for m in history if m.role == "assistant"][-1]
    # Carol sees one summary (the notice, now finished); Alice one whole answer.
    assert len(after) == 2 and not any(m.streaming for m in after), shown
    summaries = [m for m in after if m.text.startswith("🧵")]
    answers = [m for m in after if m.text.strip() == FIRST.strip()]
    assert [m.ts for m in summaries] == [notice.ts], shown
    assert "People said hello" in summaries[0].text
    assert len(answers) == 1 and answers[0].ts == stored != notice.ts, shown
    # Nothing but the summary ever wrote to the notice: no stream stopped on it, no answer.
    on_notice = [c for c in slack_server.calls if c.params.get("ts") == notice.ts
                 and c.method.startswith("chat.")]
    assert {c.method for c in on_notice} == {"chat.update"}, [c.method for c in on_notice]
    assert all(c.params["markdown_text"].startswith(("⏳", "🧵")) for c in on_notice)
    posts = [c for c in since_q if c.method == "chat.postMessage" and c.status == 200]
    assert len(posts) == 2  # the notice, then the answer: each once


@pytest.mark.parametrize("where", ["thread", "channel"])
async def test_a_summary_post_whose_answer_was_lost_is_not_posted_twice(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path, where: str
) -> None:
    """The "Summarizing…" notice is made, its answer lost: in a thread (the shortcut) and
    at the top of the channel (/summarize). One notice, which becomes the summary."""
    model_server.respond_with(lambda body: "### Key points\n- People said hello [m1]")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        said = slack_server.user_post(CHANNEL, "U0ALICE", "hello everyone")
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage"})
        if where == "thread":
            await slack_server.message_shortcut(rig.bot.url, callback_id=SHORTCUT_ID,
                                                channel=CHANNEL, ts=said.ts, user="U0CAROL")
        else:
            await slack_server.slash_command(rig.bot.url, channel=CHANNEL, user="U0CAROL")
        await slack_server.wait_until(lambda: bool(model_server.requests))
        await rig.bot.idle()
    assert ("chat.postMessage", DROP_AFTER) in slack_server.faults.answered
    [summary] = [m for m in slack_server.state.all_messages() if m.bot_id]
    assert summary.text.startswith("🧵") and "People said hello" in summary.text
