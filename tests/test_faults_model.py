"""Model provider faults, end to end through the real Slack bot.

For every fault: the person sees one clear message in their thread (never two
replies), history keeps their message and whatever the bot managed to say, the next
message in the thread works, and other threads are answered meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.fakes.fault_harness import SlackRig, shown, slack_rig
from tests.fakes.model_faults import UnresponsiveModel
from tests.fakes.model_server import FakeModelServer
from tests.fakes.model_sse import MidstreamHow
from tests.fakes.slack_server import Post, SlackServer


def echoes(reply: str, text: str) -> bool:
    """The fake model's default answer: "echo: " and the (speaker-labelled) question."""
    return reply.startswith("echo: ") and text in reply


async def other_thread_is_served(rig: SlackRig) -> None:
    post = await rig.ask("are you still there?")
    await rig.answered(post)
    assert echoes(shown(rig.replies(post)), "are you still there?")


async def the_thread_goes_on(rig: SlackRig, post: Post, model: FakeModelServer) -> None:
    """A follow-up in the faulted thread is answered and the model sees the earlier turn."""
    before = len(rig.replies(post))
    follow = await rig.ask("let us try again", thread_ts=post.ts)
    await rig.slack.wait_until(lambda: len(rig.replies(post)) == before + 1)
    await rig.answered(post)
    assert echoes(rig.replies(post)[-1].text, "let us try again")
    seen = str(model.requests[-1].body)  # "messages" (Chat) or "input" (Responses)
    assert post.events[0]["event"]["text"].split("> ", 1)[1] in seen
    assert follow.thread_ts == post.ts


async def test_a_429_with_retry_after_is_waited_out_while_other_threads_are_answered(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.fail(429, headers={"Retry-After": "0.8"})
    async with slack_rig(slack_server, model_server, tmp_path, MODEL_MAX_RETRIES=2) as rig:
        post = await rig.ask("first question")
        await slack_server.wait_until(lambda: len(model_server.requests) == 1)
        await other_thread_is_served(rig)  # answered inside the Retry-After wait
        await rig.answered(post)
        [reply] = rig.replies(post)
        assert echoes(reply.text, "first question")
        history = await rig.history(post)
    assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                     ("assistant", "complete")]
    assert len(model_server.requests) == 3  # 429, the other thread, the retry


@pytest.mark.parametrize(("status", "words"), [
    (429, "the model provider is rate limiting requests (429): Rate limit reached"),
    (500, "the model provider had an internal error (500): The server had an error"),
    (503, "the model provider had an internal error (503): The engine is currently "
          "overloaded"),
])
async def test_an_error_status_that_outlasts_the_retries_is_explained_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path, status: int,
    words: str,
) -> None:
    for _ in range(2):
        model_server.fail(status, headers={"Retry-After": "0"})
    async with slack_rig(slack_server, model_server, tmp_path, MODEL_MAX_RETRIES=1) as rig:
        post = await rig.ask("will this work?")
        await rig.answered(post)
        [reply] = rig.replies(post)
        assert reply.text.startswith("⚠️ Sorry, I couldn't answer: " + words)
        history = await rig.history(post)
        assert [(m.role, m.text, m.status) for m in history] == [
            ("user", "will this work?", "complete"), ("assistant", "", "failed")]
        await other_thread_is_served(rig)
        await the_thread_goes_on(rig, post, model_server)
    assert slack_server.status("C0GENERAL", post.ts) == ""  # "is thinking…" was cleared


@pytest.mark.parametrize(("api", "finish_reason", "words"), [
    ("chat", "content_filter", "the model returned no answer (content filter)"),
    ("chat", "stop", "the model returned no answer"),
    ("chat", "length", "the model returned no answer (it reached its length limit before "
                       "writing anything)"),
    ("responses", "content_filter", "the model returned no answer (content filter)"),
    ("responses", "stop", "the model returned no answer"),
])
async def test_an_empty_or_filtered_answer_is_explained_not_left_blank(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    api: str, finish_reason: str, words: str,
) -> None:
    model_server.reply("", finish_reason=finish_reason)
    async with slack_rig(slack_server, model_server, tmp_path, MODEL_API=api) as rig:
        post = await rig.ask("something the filter blocks")
        await rig.answered(post)
        [reply] = rig.replies(post)
        assert reply.text == "⚠️ Sorry, I couldn't answer: " + words
        history = await rig.history(post)
        assert [(m.role, m.text, m.status) for m in history] == [
            ("user", "something the filter blocks", "complete"), ("assistant", "", "failed")]
        await the_thread_goes_on(rig, post, model_server)
    assert slack_server.status("C0GENERAL", post.ts) == ""  # "is thinking…" was cleared


@pytest.mark.parametrize(("how", "words"), [
    ("error", "⚠️ _Reply cut off: the model stream failed: upstream connection lost_"),
    ("disconnect", "⚠️ _Reply cut off: lost the connection to the model provider at 127.0.0.1"),
    ("malformed", "⚠️ _Reply cut off: the model provider sent a malformed stream_"),
])
async def test_a_stream_broken_midway_keeps_the_partial_answer_with_a_marker(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    how: MidstreamHow, words: str,
) -> None:
    partial = "Here is the first half of a long answer, "
    model_server.fail_midstream(partial, how=how)
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        post = await rig.ask("tell me everything")
        await rig.answered(post)
        [reply] = rig.replies(post)
        assert reply.text.startswith(partial.strip())
        assert words in reply.text, reply.text
        history = await rig.history(post)
        assert [(m.role, m.text, m.status) for m in history] == [
            ("user", "tell me everything", "complete"), ("assistant", partial, "partial")]
        await other_thread_is_served(rig)
        await the_thread_goes_on(rig, post, model_server)
    assert partial in str(model_server.requests[-1].body["messages"])


async def test_a_stream_that_stalls_past_the_timeout_is_cut_off_and_others_go_on(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Slowly " * 30, tokens_per_s=0.5)  # one word, then 2 s gaps
    async with slack_rig(slack_server, model_server, tmp_path, MODEL_TIMEOUT=1.0) as rig:
        post = await rig.ask("take your time")
        await slack_server.wait_until(lambda: bool(rig.replies(post)))  # first word shown
        await other_thread_is_served(rig)  # while this one is stuck
        await rig.answered(post)
        [reply] = rig.replies(post)
        assert reply.text.startswith("Slowly")
        assert "⚠️ _Reply cut off: timed out waiting for the model provider at 127.0.0.1" in (
            reply.text)
        history = await rig.history(post)
        assert history[-1].status == "partial" and history[-1].text.startswith("Slowly")
        await the_thread_goes_on(rig, post, model_server)


@pytest.mark.parametrize("mode", ["no-accept", "silent"])
async def test_a_provider_that_never_answers_times_out_with_a_clear_message(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    mode: str,
) -> None:
    async with UnresponsiveModel(mode) as dead, slack_rig(  # type: ignore[arg-type]
        slack_server, model_server, tmp_path, MODEL_BASE_URL=dead.base_url,
        MODEL_TIMEOUT=0.5, MODEL_MAX_RETRIES=0,
    ) as rig:
        first = await rig.ask("hello?")
        started = time.monotonic()
        second = await rig.ask("anyone?")  # acked at once although the first is stuck
        assert time.monotonic() - started < 2
        await asyncio.gather(rig.answered(first), rig.answered(second))
        for post in (first, second):
            [reply] = rig.replies(post)
            assert reply.text == (
                "⚠️ Sorry, I couldn't answer: timed out waiting for the model provider "
                f"at 127.0.0.1:{dead.port}"
            )
            history = await rig.history(post)
            assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                             ("assistant", "failed")]
    assert mode == "no-accept" or dead.connections >= 1
