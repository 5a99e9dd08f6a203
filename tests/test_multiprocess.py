"""Real `threadwise slack` processes sharing one real PostgreSQL: three in HTTP mode,
and two Socket Mode replicas.

Signed Events API deliveries are spread across the processes, with duplicates and
retries sent to different ones. What a workspace must see: one reply per message,
turns in one thread one at a time, and when the process writing a reply is killed
with SIGKILL, the next turn (or, in a quiet thread, the sweeper) finishes the dead
reply with the interruption marker and the conversation carries on.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from core.orphans import INTERRUPTED
from tests.fakes.bot_processes import BotProcess, Fleet, clean_env, free_port, until_turns
from tests.fakes.log_capture import LogHygiene
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import SlackServer
from tests.fakes.slack_state import Message
from tests.pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)

CHANNEL = "C0MULTI"
LEASE_TTL_S = 2.0  # a dead holder's thread is free again this soon
SPAN_BODY = web.RequestKey("span_body", dict)


# --- the model: records when each request streamed --------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    started: float
    ended: float
    body: dict[str, Any]


@dataclass
class TimedModelServer(FakeModelServer):
    """The shared fake model, also noting when each completion started and ended."""

    spans: list[Span] = field(default_factory=list, repr=False)

    async def _record(
        self, request: web.Request
    ) -> tuple[dict[str, Any] | None, web.Response | None]:
        body, refusal = await super()._record(request)
        request[SPAN_BODY] = body or {}  # per-request storage, read back in _serve
        return body, refusal

    async def _serve(self, request: web.Request, *args: Any) -> web.StreamResponse:
        started = time.monotonic()
        try:
            return await super()._serve(request, *args)
        finally:
            self.spans.append(Span(started, time.monotonic(), request.get(SPAN_BODY, {})))


@pytest.fixture
async def model() -> AsyncIterator[TimedModelServer]:
    server = TimedModelServer(echo_tokens_per_s=25)  # ~0.6 s per echo: overlaps would show
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert not server.schema_errors, server.schema_errors


@pytest.fixture
async def slack() -> AsyncIterator[SlackServer]:
    server = SlackServer(rate_speed=5.0)  # three processes share one workspace's tiers
    await server.start()
    server.add_user("U1", "Ada")
    try:
        yield server
    finally:
        await server.close()


# --- the processes -------------------------------------------------------------------


@pytest.fixture
async def fleet(
    pg_url: str, slack: SlackServer, model: TimedModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> AsyncIterator[Fleet]:
    # Depends on what the processes talk to, so they are killed before those stop.
    async with Fleet(tmp_path, "slack", scan=log_hygiene.check_output) as running:
        yield running


def bot_env(
    slack: SlackServer, model: FakeModelServer, database_url: str, **extra: str
) -> dict[str, str]:
    return clean_env(
        MODEL_BASE_URL=model.base_url, MODEL_API_KEY="test-key", MODEL_MAX_RETRIES="0",
        DATABASE_URL=database_url, SLACK_BOT_TOKEN=slack.cfg.bot_token,
        SLACK_SIGNING_SECRET=slack.signing_secret, SLACK_API_URL=slack.api_url,
        THREADWISE_LEASE_TTL_S=str(LEASE_TTL_S), THREADWISE_ORPHAN_SWEEP_S="0", **extra,
    )


# --- helpers that read what people see ------------------------------------------------


async def deliver_all(
    slack: SlackServer, sends: list[tuple[BotProcess, dict[str, Any], int | None]]
) -> None:
    """Send every delivery at once, as Slack does under load; each is acked with 200."""
    results = await asyncio.gather(*(
        slack.deliver(bot.url, payload, retry_num=retry) for bot, payload, retry in sends
    ))
    assert [r.status for r in results] == [200] * len(sends)
    assert max(r.elapsed_s for r in results) < 3.0, "Slack needs an answer within 3 s"


def finished(replies: list[Message]) -> bool:
    return all(not m.streaming for m in replies)


# --- the tests -------------------------------------------------------------------------


async def test_each_message_is_answered_exactly_once_across_three_processes(
    fleet: Fleet, slack: SlackServer, model: TimedModelServer, pg_url: str
) -> None:
    bots = await fleet.start(*[bot_env(slack, model, pg_url)] * 3)
    model.echo_tokens_per_s = None  # quick answers: this test is about who answers
    posts = [slack.user_post(CHANNEL, "U1", f"{slack.mention} question {n}") for n in range(6)]
    sends: list[tuple[BotProcess, dict[str, Any], int | None]] = []
    for n, post in enumerate(posts):
        message, mention = post.events  # Slack sends both for one post
        first, second, third = bots[n % 3], bots[(n + 1) % 3], bots[(n + 2) % 3]
        # The mention reaches all three processes: once, as a retry, as a second retry.
        sends += [(first, message, None), (second, mention, None), (third, mention, 1),
                  (first, mention, 2)]
    await deliver_all(slack, sends)

    totals = await until_turns(bots, answered=6, duplicate=12)
    assert totals.get("answered") == 6 and totals.get("duplicate") == 12
    for n, post in enumerate(posts):
        replies = slack.bot_replies(CHANNEL, post.ts)
        assert len(replies) == 1, f"question {n} got {len(replies)} replies"
        await slack.wait_until(functools.partial(finished, replies))
        assert replies[0].text.startswith("echo: ") and f"question {n}" in replies[0].text
    assert len(model.requests) == 6


async def test_turns_in_one_thread_never_overlap_across_processes(
    fleet: Fleet, slack: SlackServer, model: TimedModelServer, pg_url: str
) -> None:
    bots = await fleet.start(*[bot_env(slack, model, pg_url)] * 3)
    opening = slack.user_post(CHANNEL, "U1", f"{slack.mention} let us talk")
    await deliver_all(slack, [(bots[0], opening.events[1], None)])
    await until_turns(bots, answered=1)

    follow_ups = [
        slack.user_post(CHANNEL, "U1", f"{slack.mention} follow-up {n}", thread_ts=opening.ts)
        for n in range(3)
    ]
    # All three at once, each to its own process, each also retried to the next one.
    await deliver_all(slack, [
        (bots[n], post.events[1], None) for n, post in enumerate(follow_ups)
    ] + [(bots[(n + 1) % 3], post.events[1], 1) for n, post in enumerate(follow_ups)])
    await until_turns(bots, answered=4, duplicate=3)

    spans = sorted(model.spans, key=lambda s: s.started)
    assert len(spans) == 4
    for earlier, later in itertools.pairwise(spans):
        assert earlier.ended <= later.started, "two turns of one thread streamed at once"
    for n, span in enumerate(spans):
        # Each turn saw every earlier answer complete in its history.
        assert json.dumps(span.body).count("echo: ") == n
    replies = slack.bot_replies(CHANNEL, opening.ts)
    assert len(replies) == 4 and finished(replies)


async def test_a_process_killed_mid_reply_leaves_a_marked_reply_and_others_carry_on(
    fleet: Fleet, slack: SlackServer, model: TimedModelServer, pg_url: str
) -> None:
    env = bot_env(slack, model, pg_url)  # no sweepers yet: only the next turn may clean up
    bots = await fleet.start(env, env, env)
    slow = " ".join(f"word{i}" for i in range(400))
    model.reply(slow, tokens_per_s=8)  # ~50 s: certainly mid-stream when the holder dies
    model.reply(slow, tokens_per_s=8)
    busy = slack.user_post(CHANNEL, "U1", f"{slack.mention} a long answer please")
    quiet = slack.user_post(CHANNEL, "U1", f"{slack.mention} another long one")
    holder = bots[0]
    await deliver_all(slack, [(holder, busy.events[1], None), (holder, quiet.events[1], None)])

    db = await asyncpg.connect(pg_url)
    try:
        # Both replies are visibly streaming, several writes in, their Slack ts saved:
        # the state a crash leaves behind.
        deadline = time.monotonic() + 20
        while len(await db.fetch("SELECT id FROM messages WHERE status = 'streaming' "
                                 "AND platform_id IS NOT NULL AND text LIKE '%word3 %'")) < 2:
            assert time.monotonic() < deadline, holder.log()[-2000:]
            await asyncio.sleep(0.05)
        assert len(await db.fetch("SELECT name FROM leases")) == 2
        await fleet.kill(holder)
        [busy_orphan] = slack.bot_replies(CHANNEL, busy.ts)
        [quiet_orphan] = slack.bot_replies(CHANNEL, quiet.ts)
        assert busy_orphan.streaming and quiet_orphan.streaming

        # The thread moves on: another process waits out the dead lease and answers.
        next_turn = slack.user_post(CHANNEL, "U1", f"{slack.mention} hello?", thread_ts=busy.ts)
        await deliver_all(slack, [(bots[1], next_turn.events[1], None),
                                  (bots[2], next_turn.events[1], 1)])
        await slack.wait_until(lambda: len(slack.bot_replies(CHANNEL, busy.ts)) == 2
                               and finished(slack.bot_replies(CHANNEL, busy.ts)), 20)
        assert quiet_orphan.streaming, "nothing happened in the quiet thread yet"

        # The crashed process is replaced; its start-up sweep finalises the quiet thread.
        await fleet.start(dict(env, THREADWISE_ORPHAN_SWEEP_S="600"))
        await slack.wait_until(lambda: quiet_orphan.text.endswith(INTERRUPTED), 20)

        for orphan in (busy_orphan, quiet_orphan):
            assert not orphan.streaming, "the dead process's stream was stopped"
            assert orphan.text.endswith(INTERRUPTED) and orphan.text.count(INTERRUPTED) == 1
            # What the dead process had streamed stays (as of its last saved write).
            kept = orphan.text.removesuffix(INTERRUPTED).rstrip()
            assert kept.startswith("word0 word1 word2 word3") and slow.startswith(kept)
        answer = slack.bot_replies(CHANNEL, busy.ts)[1]
        assert answer.text.startswith("echo: ") and "hello?" in answer.text
        [after] = [s for s in model.spans if "hello?" in json.dumps(s.body)]
        assert "word0 word1" in json.dumps(after.body), "the next turn saw the cut reply"
        # The sweep saves 'partial' just after its Slack write, which the test saw.
        deadline = time.monotonic() + 10
        while [r["status"] for r in await db.fetch(
            "SELECT status FROM messages WHERE role = 'assistant' ORDER BY id"
        )] != ["partial", "partial", "complete"]:
            assert time.monotonic() < deadline, "the orphans were not saved as partial"
            await asyncio.sleep(0.05)
    finally:
        await db.close()
    assert (await until_turns(bots[1:], answered=1)).get("answered") == 1


async def test_a_process_frozen_past_its_lease_stops_on_waking_and_leaves_the_thread_alone(
    fleet: Fleet, slack: SlackServer, model: TimedModelServer, pg_url: str
) -> None:
    env = bot_env(slack, model, pg_url)
    frozen, other = await fleet.start(env, env)
    slow = " ".join(f"word{i}" for i in range(400))
    model.reply(slow, tokens_per_s=8)  # ~50 s: the model is still writing when it wakes
    question = slack.user_post(CHANNEL, "U1", f"{slack.mention} a long answer please")
    await deliver_all(slack, [(frozen, question.events[1], None)])

    db = await asyncpg.connect(pg_url)
    try:
        deadline = time.monotonic() + 20
        while not await db.fetch("SELECT id FROM messages WHERE status = 'streaming' "
                                 "AND platform_id IS NOT NULL AND text LIKE '%word3 %'"):
            assert time.monotonic() < deadline, frozen.log()[-2000:]
            await asyncio.sleep(0.05)
        fleet.freeze(frozen)  # alive, sockets open, but silent for longer than its lease
        [cut] = slack.bot_replies(CHANNEL, question.ts)

        # The thread moves on without it: the other process takes the expired lease,
        # marks the reply interrupted and answers.
        follow_up = slack.user_post(CHANNEL, "U1", f"{slack.mention} hello?",
                                    thread_ts=question.ts)
        await deliver_all(slack, [(other, follow_up.events[1], None)])
        await slack.wait_until(lambda: len(slack.bot_replies(CHANNEL, question.ts)) == 2
                               and finished(slack.bot_replies(CHANNEL, question.ts)), 20)
        marked = cut.text
        assert marked.endswith(INTERRUPTED)
        # The answer's row is saved just after its last Slack write, which the test saw.
        deadline = time.monotonic() + 10
        while True:
            saved = await db.fetch("SELECT status, text FROM messages "
                                   "WHERE role = 'assistant' ORDER BY id")
            if [r["status"] for r in saved] == ["partial", "complete"]:
                break
            assert time.monotonic() < deadline, "the other process never saved its answer"
            await asyncio.sleep(0.05)

        # It wakes with the model's words queued in its socket. It must notice that the
        # thread is no longer its own before it writes anything more.
        fleet.thaw(frozen)
        totals = await until_turns([frozen], superseded=1)
        assert totals.get("answered", 0) == 0 and totals.get("failed", 0) == 0
        assert cut.text == marked, "the woken process overwrote the interruption marker"
        assert len(slack.bot_replies(CHANNEL, question.ts)) == 2, "no second reply or error"
        after = await db.fetch("SELECT status, text FROM messages WHERE role = 'assistant' "
                               "ORDER BY id")
        assert after == saved  # the woken process saved nothing over them
        assert "lost the thread's lease" in frozen.log()
        # It also hung up on the model rather than pay for the ~40 s of reply left.
        deadline = time.monotonic() + 5
        while not any("a long answer please" in json.dumps(s.body) for s in model.spans):
            assert time.monotonic() < deadline, "the woken process kept streaming the model"
            await asyncio.sleep(0.05)

        # And it goes on serving other threads.
        elsewhere = slack.user_post(CHANNEL, "U1", f"{slack.mention} still there?")
        await deliver_all(slack, [(frozen, elsewhere.events[1], None)])
        await until_turns([frozen], answered=1)
        [answer] = slack.bot_replies(CHANNEL, elsewhere.ts)
        await slack.wait_until(functools.partial(finished, [answer]))
        assert "still there?" in answer.text
    finally:
        await db.close()


async def test_socket_mode_replicas_answer_each_message_once(
    fleet: Fleet, slack: SlackServer, model: TimedModelServer, pg_url: str
) -> None:
    env = bot_env(slack, model, pg_url, SLACK_APP_TOKEN=slack.cfg.app_token)
    await fleet.start(dict(env, PORT=str(free_port())), dict(env, PORT=str(free_port())))
    bots = fleet.bots
    assert len(slack.socket.connections) == 2  # one Socket Mode connection per replica
    model.echo_tokens_per_s = None
    posts = [slack.user_post(CHANNEL, "U1", f"{slack.mention} socket {n}") for n in range(4)]

    acks = await asyncio.gather(*(
        slack.socket.deliver(event, connection=(n + side) % 2, retry_attempt=retry)
        for n, post in enumerate(posts)
        # The message event on one connection, the mention on the other, and the
        # mention's retry back on the first: every replica sees every post.
        for side, retry, event in ((0, 0, post.events[0]), (1, 0, post.events[1]),
                                   (0, 1, post.events[1]))
    ))
    assert len(acks) == 12

    totals = await until_turns(bots, answered=4, duplicate=4)
    assert totals.get("answered") == 4 and totals.get("duplicate") == 4
    for post in posts:
        assert len(slack.bot_replies(CHANNEL, post.ts)) == 1
    assert len(model.requests) == 4
