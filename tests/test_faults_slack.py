"""Slack Web API faults: 429 storms, 5xx answers and dropped connections while replies
are written.

The answer still arrives whole, in exactly one message per reply, history is complete,
and the other thread asked at the same time is answered too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes.fault_harness import shown, slack_rig
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_faults import DROP, DROP_AFTER
from tests.fakes.slack_server import SlackServer

WRITES = {"chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage",
          "chat.update"}
ANSWER = "Storms pass. " * 12


async def test_a_429_storm_on_every_write_method_delays_but_never_loses_or_doubles(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply(ANSWER, tokens_per_s=100)
    model_server.reply(ANSWER, tokens_per_s=100)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        slack_server.faults.add(429, 5, methods=WRITES, retry_after=0)
        first, second = await asyncio.gather(rig.ask("first thread"), rig.ask("second thread"))
        await asyncio.gather(rig.answered(first), rig.answered(second))
        for post in (first, second):
            [reply] = rig.replies(post)
            assert reply.text.strip() == ANSWER.strip()
            history = await rig.history(post)
            assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                             ("assistant", "complete")]
        metrics = rig.core.metrics.registry.get_sample_value(
            "threadwise_slack_rate_limited_total")
    assert [status for _, status in slack_server.faults.answered] == [429] * 5
    # Each retried 429 is counted for the operator (a startStream whose retries ran out
    # fell back to posting instead).
    assert metrics is not None and metrics >= 4


async def test_5xx_answers_are_retried_and_the_reply_lands_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply(ANSWER, tokens_per_s=100)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        slack_server.faults.add(503, 2, methods={"chat.startStream", "chat.postMessage"})
        slack_server.faults.add(500, 2, methods={"chat.appendStream", "chat.stopStream",
                                                 "chat.update"})
        post = await rig.ask("through the outage")
        await rig.answered(post)
        [reply] = rig.replies(post)
        history = await rig.history(post)
        other = await rig.ask("and another thread")
        await rig.answered(other)
    assert reply.text.strip() == ANSWER.strip()
    assert [(m.role, m.status, m.text) for m in history][1] == ("assistant", "complete", ANSWER)
    assert sorted(status for _, status in slack_server.faults.answered) == [500, 500, 503, 503]
    assert "and another thread" in shown(rig.replies(other))


async def test_a_slack_outage_longer_than_the_retries_delays_the_reply_until_slack_is_back(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Sent when Slack came back.")
    faults = slack_server.faults
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        faults.add(503, 10_000, methods=WRITES | {"users.info"})  # Slack is down
        post = await rig.ask("during the outage")
        # users.info (3 tries) and a post (3 tries each) have failed: past slack_sdk's retries.
        await slack_server.wait_until(lambda: len(faults.answered) >= 9, timeout_s=20)
        assert rig.replies(post) == []
        faults.storms.clear()  # Slack is back
        await rig.answered(post)
        [reply] = rig.replies(post)
        history = await rig.history(post)
        follow = await rig.ask("after the outage", thread_ts=post.ts)
        await slack_server.wait_until(lambda: len(rig.replies(post)) == 2)
        await rig.answered(follow)
    assert reply.text == "Sent when Slack came back."
    assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                     ("assistant", "complete")]
    assert history[0].author_name == "U0ALICE"  # users.info was down: the id stands in
    assert "after the outage" in rig.replies(post)[-1].text


async def test_a_connection_dropped_mid_stream_leaves_the_text_whole_and_never_doubled(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    answer = " ".join(f"w{i}" for i in range(60))
    model_server.reply(answer, tokens_per_s=40)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        # An append loses its connection. It is not sent again (it may have been carried
        # out), and what the stream object still holds must not be sent again either.
        slack_server.faults.add(DROP, 1, methods={"chat.appendStream"})
        post = await rig.ask("count to sixty")
        await rig.answered(post)
        [reply] = rig.replies(post)
        history = await rig.history(post)
    assert reply.text == answer
    assert [status for _, status in slack_server.faults.answered] == [DROP]
    # The same message was finished by chat.update, which rewrites it whole.
    assert slack_server.calls_to("chat.update")[-1].params["ts"] == reply.ts
    assert [(m.role, m.status, m.text) for m in history][1] == ("assistant", "complete", answer)


@pytest.mark.parametrize("lost", ["chat.startStream", "chat.postMessage", "chat.appendStream"])
async def test_a_post_slack_made_whose_answer_was_lost_is_not_posted_again(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path, lost: str
) -> None:
    model_server.reply(ANSWER, tokens_per_s=100)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        if lost == "chat.postMessage":  # no stream today: the reply is posted
            slack_server.faults.add(503, 1, methods={"chat.startStream"})
        slack_server.faults.add(DROP_AFTER, 1, methods={lost})
        post = await rig.ask("say it once")
        await rig.answered(post)
        history = await rig.history(post)
        replies = rig.replies(post)
    assert (lost, DROP_AFTER) in slack_server.faults.answered
    [reply] = replies  # Slack made the message once; it was not sent a second time
    assert reply.text.strip() == ANSWER.strip() and not reply.streaming
    assert [(m.role, m.status, m.platform_id) for m in history][1] == (
        "assistant", "complete", reply.ts)
