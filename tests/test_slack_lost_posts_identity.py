"""Which message a lost Slack post made: told by its nonce (a post's metadata) or by its
whole text as Slack renders it (a stream), so another reply, another replica's reply, a
short or emoji-only answer or a summary's parts are never confused with it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from adapters.slack.bot import web_client
from adapters.slack.files import FileHostPolicy, SlackFileFetcher
from adapters.slack.metrics import SlackMetrics
from adapters.slack.port import SlackChatPort
from adapters.slack.rate import SlackRateGate
from adapters.slack.summary import SHORTCUT_ID
from core.types import ThreadKey
from tests.fakes.fault_harness import CHANNEL, slack_rig
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_faults import DROP_AFTER
from tests.fakes.slack_harness import bot_settings
from tests.fakes.slack_server import SlackServer
from tests.fakes.slack_state import Message

LONG = "### Key points\n" + "".join(
    f"- Point {i}: people discussed item number {i} at some length today [m1]\n"
    for i in range(160))


@pytest.fixture
async def ports(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> AsyncIterator[tuple[SlackChatPort, SlackChatPort]]:
    """Two ports as two replicas of the bot (README "Scaling": 2+ Slack processes)."""
    settings = bot_settings(slack_server, model_server, tmp_path / "t.db")
    out = []
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            metrics = SlackMetrics(CollectorRegistry())
            files = SlackFileFetcher(slack_server.cfg.bot_token, FileHostPolicy(()), http)
            port = SlackChatPort(
                web_client(settings, metrics), files, gate=SlackRateGate(speed=10),
                stream_idle_s=30, posts=web_client(settings, metrics, resend_lost=False))
            port.lost.bot_id = slack_server.cfg.bot_id
            out.append(port)
        yield out[0], out[1]
        for port in out:
            await port.aclose()


def _ask(slack_server: SlackServer, port: SlackChatPort, text: str,
         thread_ts: str | None = None) -> tuple[ThreadKey, str]:
    msg = slack_server.user_post(CHANNEL, "U0ALICE", text, thread_ts=thread_ts)
    key = ThreadKey("slack", "T0TEAM", CHANNEL, thread_ts or msg.ts)
    port.remember_requester(key, msg.ts, "U0ALICE", "T0TEAM")
    return key, msg.ts


# --- texts with no letters or digits --------------------------------------------------

async def test_an_emoji_only_reply_whose_answer_was_lost_is_posted_once(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort]
) -> None:
    port, _ = ports
    key, ask = _ask(slack_server, port, f"{slack_server.mention} ship it?")
    slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage"})
    ts = await port.post(key, "👍", reply_to=ask, final=True)
    await port.finish(key, ts, "👍")
    shown = [(m.ts, m.text) for m in slack_server.bot_replies(CHANNEL, key.root)]
    assert ("chat.postMessage", DROP_AFTER) in slack_server.faults.answered
    assert len(shown) == 1, shown


async def test_an_emoji_only_stream_whose_answer_was_lost_is_not_doubled(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort]
) -> None:
    port, _ = ports
    key, ask = _ask(slack_server, port, f"{slack_server.mention} ship it?")
    slack_server.faults.add(DROP_AFTER, 1, methods={"chat.startStream"})
    ts = await port.post(key, "🚀", reply_to=ask)
    await port.finish(key, ts, "🚀🚀")
    shown = [(m.text, m.streaming) for m in slack_server.bot_replies(CHANNEL, key.root)]
    assert ("chat.startStream", DROP_AFTER) in slack_server.faults.answered
    assert shown == [("🚀🚀", False)], shown


async def test_an_emoji_only_answer_from_the_whole_bot_is_shown_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("👍")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage", "chat.startStream"})
        post = await rig.ask("ship it?")
        await slack_server.wait_until(lambda: len(model_server.requests) == 1)
        await rig.bot.idle()
        shown = [(m.text, m.streaming) for m in rig.replies(post)]
    assert slack_server.faults.answered and slack_server.faults.answered[0][1] == DROP_AFTER
    assert shown == [("👍", False)], shown


# --- another replica's reply -----------------------------------------------------------

async def test_a_short_reply_does_not_take_over_another_replicas_reply(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort]
) -> None:
    """q1 and q2 back to back in a thread; replica A answers q1, then replica B answers
    q2 (the thread lease serialises them) with the same words, and its chat.postMessage
    gets a 503 that Slack did not carry out: only the nonce tells the posts apart."""
    a, b = ports
    key, root = _ask(slack_server, a, f"{slack_server.mention} hi")
    _, q1 = _ask(slack_server, a, "Is the deploy done?", thread_ts=root)
    _, q2 = _ask(slack_server, b, "Did the tests pass?", thread_ts=root)
    ts_a = await a.post(key, "Yes.", reply_to=q1, final=True)
    await a.finish(key, ts_a, "Yes.")
    slack_server.faults.add(503, 1, methods={"chat.postMessage"})
    ts_b = await b.post(key, "Yes.", reply_to=q2, final=True)
    await b.finish(key, ts_b, "Yes.")
    shown = [m.text for m in slack_server.bot_replies(CHANNEL, root)]
    assert ("chat.postMessage", 503) in slack_server.faults.answered
    assert ts_b != ts_a and shown == ["Yes.", "Yes."], shown


async def test_a_generic_opening_does_not_take_over_another_replicas_reply(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort]
) -> None:
    """Model answers often open the same way; a different ending is a different post."""
    a, b = ports
    key, root = _ask(slack_server, a, f"{slack_server.mention} hi")
    _, q1 = _ask(slack_server, a, "Can you delete the prod DB?", thread_ts=root)
    _, q2 = _ask(slack_server, b, "Can you read my email?", thread_ts=root)
    first = "I'm sorry, but I can't help with that: deleting production data needs a human."
    second = "I'm sorry, but I can't help with that: I have no access to your mailbox."
    ts_a = await a.post(key, first, reply_to=q1, final=True)
    await a.finish(key, ts_a, first)
    slack_server.faults.add(503, 1, methods={"chat.postMessage"})
    ts_b = await b.post(key, second, reply_to=q2, final=True)
    await b.finish(key, ts_b, second)
    shown = [m.text for m in slack_server.bot_replies(CHANNEL, root)]
    assert shown == [first, second], shown


async def test_two_replicas_a_503_on_the_second_reply_does_not_lose_it(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    """The whole bot, two replicas on one store (one SQLite file: one lease per thread).
    q1 goes to replica A, q2 to replica B; B's chat.startStream gets a 503 (not done)."""
    first = "Yes, the deploy finished at 10:02 and is healthy."
    model_server.reply("Hello!")
    model_server.reply(first, ttft_s=0.5, tokens_per_s=40)
    model_server.reply("Yes.")
    async with slack_rig(slack_server, model_server, tmp_path) as a, \
            slack_rig(slack_server, model_server, tmp_path) as b:
        root = await a.ask("hi")
        await a.answered(root)
        await a.ask("Is the deploy done?", thread_ts=root.ts)
        await b.ask("Did the tests pass?", thread_ts=root.ts)
        await slack_server.wait_until(lambda: len(a.replies(root)) == 2)
        slack_server.faults.add(503, 1, methods={"chat.startStream", "chat.postMessage"})
        await slack_server.wait_until(lambda: len(model_server.requests) == 3, timeout_s=20)
        await a.bot.idle()
        await b.bot.idle()
        shown = [m.text.strip() for m in a.replies(root)]
    assert slack_server.faults.answered, "no 503 was sent"
    assert shown == ["Hello!", first, "Yes."], shown


async def test_a_workspace_that_refuses_metadata_still_gets_one_message_per_post(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort]
) -> None:
    """Posts go without metadata from then on; a lost one is found by its text."""
    port, _ = ports
    slack_server.api.refuse_metadata = True
    key, ask = _ask(slack_server, port, f"{slack_server.mention} hi")
    first = await port.post(key, "The first answer.", reply_to=ask, final=True)
    slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage"})
    second = await port.post(key, "The second answer.", reply_to=first, final=True)
    shown = [(m.ts, m.text) for m in slack_server.bot_replies(CHANNEL, key.root)]
    assert shown == [(first, "The first answer."), (second, "The second answer.")]
    refused = [c for c in slack_server.calls_to("chat.postMessage")
               if c.error == "invalid_metadata_format"]
    assert len(refused) == 1  # asked once, then never again


# --- the text as Slack returns it ---------------------------------------------------------

@pytest.mark.parametrize("sent, shown", [
    ("Q&A prep: the agenda is ready for Monday.",
     "Q&amp;A prep: the agenda is ready for Monday."),
    ("> Note: deploys are frozen until Friday.", "&gt; Note: deploys are frozen until Friday."),
    ("If x < 3 then retry the job, else alert.", "If x &lt; 3 then retry the job, else alert."),
])
async def test_a_lost_post_is_recognised_with_slacks_escaped_entities(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort], sent: str, shown: str
) -> None:
    """Slack escapes &, < and > in the `text` it returns (adapters/slack/markup.py
    decode_entities says so for inbound text); the message the lost call made."""
    port, _ = ports
    key, ask = _ask(slack_server, port, f"{slack_server.mention} hi")
    slack_server.state.add(Message(
        channel=CHANNEL, ts=slack_server.state.next_ts(), thread_ts=key.root,
        user=slack_server.cfg.bot_user_id, bot_id=slack_server.cfg.bot_id, text=shown))
    [made] = slack_server.bot_replies(CHANNEL, key.root)
    assert await port.lost.find(key, ask, sent, since=time.time()) == made.ts


# --- summaries and one process --------------------------------------------------------

@pytest.mark.parametrize("where", ["thread", "channel"])
async def test_a_lost_later_part_of_a_split_summary_is_posted_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path, where: str
) -> None:
    model_server.reply(LONG, ttft_s=1.0)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        said = slack_server.user_post(CHANNEL, "U0ALICE", "hello everyone")
        if where == "thread":
            await slack_server.message_shortcut(rig.bot.url, callback_id=SHORTCUT_ID,
                                                channel=CHANNEL, ts=said.ts, user="U0CAROL")
        else:
            await slack_server.slash_command(rig.bot.url, channel=CHANNEL, user="U0CAROL")
        await slack_server.wait_until(
            lambda: any(m.bot_id for m in slack_server.state.all_messages()))
        slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage"})
        await slack_server.wait_until(lambda: bool(model_server.requests))
        await rig.bot.idle()
    assert ("chat.postMessage", DROP_AFTER) in slack_server.faults.answered
    ours = [m for m in slack_server.state.all_messages() if m.bot_id]
    texts = [m.text for m in ours]
    assert len(texts) == len(set(texts)), [t[:40] for t in texts]
    assert len(ours) >= 2 and "Point 159" in "".join(texts)
    assert not any("Summarizing" in t for t in texts)


async def test_one_process_two_equal_streams_with_a_503_are_both_shown(
    slack_server: SlackServer, ports: tuple[SlackChatPort, SlackChatPort]
) -> None:
    """Streams carry no nonce: the first "Yes." is known to this process, so the
    second's 503 (not carried out) does not adopt it."""
    port, _ = ports
    key, root = _ask(slack_server, port, f"{slack_server.mention} hi")
    _, q1 = _ask(slack_server, port, "q one?", thread_ts=root)
    _, q2 = _ask(slack_server, port, "q two?", thread_ts=root)
    first = await port.post(key, "Yes.", reply_to=q1)
    await port.finish(key, first, "Yes.")
    slack_server.faults.add(503, 1, methods={"chat.startStream"})
    second = await port.post(key, "Yes.", reply_to=q2)
    await port.finish(key, second, "Yes.")
    assert ("chat.startStream", 503) in slack_server.faults.answered
    assert first != second
    assert [m.text for m in slack_server.bot_replies(CHANNEL, root)] == ["Yes.", "Yes."]
