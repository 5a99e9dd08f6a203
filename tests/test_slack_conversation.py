"""Conversations in Slack threads, end to end: emulated Slack, fake model, real core."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.bad_files import png
from tests.fakes.model_requests import image_sizes
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import request_text, running_bot
from tests.fakes.slack_server import SlackServer
from tests.fakes.slack_state import pings_in

CHANNEL = "C0GENERAL"


async def _deliver_all(slack: SlackServer, url: str, events: list[dict[str, object]]) -> None:
    for event in events:
        delivery = await slack.deliver(url, event)
        assert delivery.status == 200, delivery.body


async def test_a_mention_with_an_image_streams_a_reply_and_the_model_sees_the_image(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack_server.add_user("U0ALICE", "Alice Doe")
    answer = "It is a plain red rectangle, twice as wide as it is tall. " * 4
    model_server.reply(answer, tokens_per_s=60)
    async with running_bot(slack_server, model_server, tmp_path, speed=5) as bot:
        photo = slack_server.host_file("photo.png", png(3000, 1500), "image/png")
        post = slack_server.user_post(
            CHANNEL, "U0ALICE", f"{slack_server.mention} what is in this picture?", files=[photo]
        )
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()

    [request] = model_server.requests
    [(width, height)] = image_sizes(request.body)
    assert max(width, height) <= 2048 and width == 2 * height  # downscaled, not distorted
    seen = request_text(request.body)
    assert "what is in this picture?" in seen and "Alice Doe" in seen and "<@UBOT>" not in seen
    [reply] = slack_server.bot_replies(CHANNEL, post.ts)
    assert reply.thread_ts == post.ts  # a thread was started on the mention
    assert reply.text.strip() == answer.strip()
    assert reply.kind == "stream" and reply.appends >= 2  # it grew over several writes
    assert "is thinking…" in slack_server.state.statuses[(CHANNEL, post.ts)]
    download = slack_server.files.requests[0]
    assert download.authorization == f"Bearer {slack_server.cfg.bot_token}"


async def test_a_follow_up_in_the_thread_needs_no_mention_and_sees_the_history(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack_server.add_user("U0ALICE", "Alice")
    slack_server.add_user("U0BOB", "Bob")
    model_server.reply("Paris is the capital of France.")
    model_server.reply("About 2.1 million people live there.")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        first = slack_server.user_post(
            CHANNEL, "U0ALICE", f"{slack_server.mention} capital of France?"
        )
        await _deliver_all(slack_server, bot.url, first.events)
        await bot.idle()
        follow = slack_server.user_post(CHANNEL, "U0BOB", "and how many live there?",
                                        thread_ts=first.ts)
        assert len(follow.events) == 1  # a plain thread message: no app_mention
        await _deliver_all(slack_server, bot.url, follow.events)
        await bot.idle()
        chatter = slack_server.user_post("C0RANDOM", "U0BOB", "unrelated", thread_ts="1.000001")
        await _deliver_all(slack_server, bot.url, chatter.events)
        await bot.idle()

    assert len(model_server.requests) == 2  # the unrelated thread was not answered
    assert slack_server.calls_to("conversations.replies") == []  # history came from the store
    seen = request_text(model_server.requests[1].body)
    assert "capital of France?" in seen and "Paris is the capital of France." in seen
    assert "Bob" in seen and "and how many live there?" in seen
    texts = [m.text for m in slack_server.bot_replies(CHANNEL, first.ts)]
    assert texts == ["Paris is the capital of France.", "About 2.1 million people live there."]


async def test_a_follow_up_also_sent_to_the_channel_is_answered_in_the_thread(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Paris is the capital of France.")
    model_server.reply("About 2.1 million people live there.")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        first = slack_server.user_post(
            CHANNEL, "U0ALICE", f"{slack_server.mention} capital of France?"
        )
        await _deliver_all(slack_server, bot.url, first.events)
        await bot.idle()
        # "Also send to #general" ticked: Slack delivers subtype thread_broadcast.
        follow = slack_server.user_post(CHANNEL, "U0ALICE", "and how many live there?",
                                        thread_ts=first.ts, broadcast=True)
        await _deliver_all(slack_server, bot.url, follow.events)
        await bot.idle()
    texts = [m.text for m in slack_server.bot_replies(CHANNEL, first.ts)]
    assert texts == ["Paris is the capital of France.", "About 2.1 million people live there."]
    assert "capital of France?" in request_text(model_server.requests[1].body)


async def test_each_reply_streams_to_the_person_who_asked_it(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Happy to help.")
    model_server.reply("For Alice: " + "word " * 40, ttft_s=1.0, tokens_per_s=40)
    model_server.reply("For Bob: " + "word " * 40, tokens_per_s=40)
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        root = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
        await _deliver_all(slack_server, bot.url, root.events)
        await bot.idle()
        alice = slack_server.user_post(CHANNEL, "U0ALICE", "alice asks", thread_ts=root.ts)
        await _deliver_all(slack_server, bot.url, alice.events)
        # Bob speaks while Alice's answer is still being thought about.
        await slack_server.wait_until(lambda: len(model_server.requests) == 2)
        bob = slack_server.user_post(CHANNEL, "U0BOB", "bob asks", thread_ts=root.ts)
        await _deliver_all(slack_server, bot.url, bob.events)
        await bot.idle()
    answers = {m.text.split(":")[0]: (m.kind, m.recipient)
               for m in slack_server.bot_replies(CHANNEL, root.ts) if m.text.startswith("For ")}
    assert answers == {"For Alice": ("stream", "U0ALICE"), "For Bob": ("stream", "U0BOB")}


async def test_a_direct_message_is_answered_in_its_thread(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post("D0ALICE", "U0ALICE", "hello bot", channel_type="im")
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    [reply] = slack_server.bot_replies("D0ALICE", post.ts)
    assert reply.thread_ts == post.ts
    assert reply.text.startswith("echo: ") and "hello bot" in reply.text


async def test_an_expired_stream_is_finished_with_chat_update(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack_server.cfg.stream_expiry_s = 0.25
    answer = " ".join(f"word{i}" for i in range(40))
    model_server.reply(answer, tokens_per_s=40)  # about one second of streaming
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} count")
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    [reply] = slack_server.bot_replies(CHANNEL, post.ts)
    assert reply.text == answer and not reply.streaming
    assert any(c.error == "message_not_in_streaming_state" for c in slack_server.calls)
    updates = slack_server.calls_to("chat.update")
    assert updates and all(c.params["ts"] == reply.ts for c in updates)


async def test_a_30000_character_answer_is_split_across_messages_without_loss(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    paragraphs = [
        f"Paragraph {i}: " + " ".join(f"considerably-long-word-{i}-{j}" for j in range(25))
        for i in range(45)
    ]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 30_000
    # Streamed like a fast model (~1,200 words in ~1.5 s), not dumped in one burst.
    model_server.reply(answer, tokens_per_s=1000)
    async with running_bot(slack_server, model_server, tmp_path, speed=20) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} long please")
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    replies = slack_server.bot_replies(CHANNEL, post.ts)
    assert len(replies) >= 8 and all(len(m.text) <= 3_900 for m in replies)
    assert not any(m.streaming for m in replies)
    shown = "\n\n".join(m.text for m in replies)
    assert shown.split() == answer.split()  # same words in the same order
    assert slack_server.rate_limited_count == 0


async def test_refused_files_are_named_and_never_get_the_token(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    foreign = slack_server.foreign_file("elsewhere.png")
    hop = slack_server.redirected_file("bounced.png", slack_server.foreign.base_url + "/x.png")
    good = slack_server.host_file("fine.png", png(40, 40), "image/png")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} look",
                                      files=[foreign, hop, good])
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    assert slack_server.foreign.requests == [] and slack_server.foreign.authorizations == []
    text = slack_server.bot_text(CHANNEL, post.ts)
    assert "elsewhere.png" in text and "bounced.png" in text and "fine.png" not in text
    assert len(image_sizes(model_server.requests[0].body)) == 1  # the allowed one was used


async def test_a_file_shared_from_another_organisation_is_read_or_named_as_unreadable(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # Slack Connect: the event names the files by id only; files.info has the rest.
    diagram = slack_server.connect_file("diagram.png", png(60, 40), "image/png")
    hidden = slack_server.connect_file("secret.png", png(60, 40), "image/png", visible=False)
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} what is this",
                                      files=[diagram, hidden])
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    assert image_sizes(model_server.requests[0].body) == [(60, 40)]  # diagram.png was seen
    text = slack_server.bot_text(CHANNEL, post.ts)
    assert "Slack didn't share its contents with me" in text  # not answered as if absent
    assert "diagram.png" not in text


async def test_a_login_page_instead_of_a_file_explains_the_missing_scope(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack_server.files.scopes.remove("files:read")
    doc = slack_server.host_file("report.pdf", b"%PDF-1.4 fake", "application/pdf")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} summarize",
                                      files=[doc])
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    text = slack_server.bot_text(CHANNEL, post.ts)
    assert "report.pdf" in text and "files:read" in text and "login page" in text


async def test_a_model_failure_leaves_a_clear_error_in_the_thread(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.fail(401)
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           MODEL_MAX_RETRIES=0) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hi")
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    [reply] = slack_server.bot_replies(CHANNEL, post.ts)
    assert "couldn't answer" in reply.text and not reply.streaming
    assert slack_server.status(CHANNEL, post.ts) == ""


async def test_mentions_written_by_the_model_ping_nobody(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    answer = "Tell <!channel> and <!here>, ping <@U0BOB> in <#C0RANDOM>; @everyone relax."
    assert len(pings_in(answer)) == 4
    model_server.reply(answer)
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} announce")
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()
    assert slack_server.pings(CHANNEL, post.ts) == []
    assert slack_server.bot_text(CHANNEL, post.ts).replace("\u200b", "") == answer


async def test_a_follow_up_sent_before_the_first_answer_started_is_answered_too(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # Looking Alice up takes Slack a second; she adds a line (no mention) meanwhile.
    slack_server.add_user("U0ALICE", "Alice")
    slack_server.cfg.delays["users.info"] = 1.0
    model_server.reply("Section 1 looks fine.")
    model_server.reply("Section 3 needs an example.")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        first = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} review this")
        await _deliver_all(slack_server, bot.url, first.events)
        await asyncio.sleep(0.3)
        more = slack_server.user_post(CHANNEL, "U0ALICE", "focus on section 3 please",
                                      thread_ts=first.ts)
        await _deliver_all(slack_server, bot.url, more.events)
        await bot.idle()

    texts = [m.text for m in slack_server.bot_replies(CHANNEL, first.ts)]
    assert texts == ["Section 1 looks fine.", "Section 3 needs an example."]
    assert "review this" in request_text(model_server.requests[1].body)


async def test_mentioned_midway_through_a_thread_the_bot_reads_what_was_said_before(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack_server.add_user("U0ALICE", "Alice")
    slack_server.add_user("U0BOB", "Bob")
    model_server.reply("PostgreSQL 17, for the JSON support you need.")
    model_server.reply("Yes.")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        root = slack_server.user_post(CHANNEL, "U0ALICE",
                                      "Pick a database: Postgres 17 or MySQL 8?")
        bob = slack_server.user_post(CHANNEL, "U0BOB", "MySQL is what ops knows.",
                                     thread_ts=root.ts)
        ask = slack_server.user_post(CHANNEL, "U0ALICE",
                                     f"{slack_server.mention} what do you think of the above?",
                                     thread_ts=root.ts)
        await _deliver_all(slack_server, bot.url, root.events + bob.events + ask.events)
        await bot.idle()
        again = slack_server.user_post(CHANNEL, "U0BOB", f"{slack_server.mention} sure?",
                                       thread_ts=root.ts)
        await _deliver_all(slack_server, bot.url, again.events)
        await bot.idle()

    first = request_text(model_server.requests[0].body)
    assert "Postgres 17 or MySQL 8?" in first and "Bob: MySQL is what ops knows." in first
    assert "what do you think of the above?" in first
    assert len(slack_server.calls_to("conversations.replies")) == 1  # once, then the store
    texts = [m.text for m in slack_server.bot_replies(CHANNEL, root.ts)]
    assert texts == ["PostgreSQL 17, for the JSON support you need.", "Yes."]


async def test_a_slow_status_call_does_not_hold_up_the_answer_but_lands_before_it(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # "is thinking…" is a whole Slack API round trip. The model's first token need not
    # wait for it, but the reply must not start before it: a status set after the reply
    # began would stay under the finished answer.
    slack_server.add_user("U0ALICE", "Alice")
    slack_server.cfg.delays["assistant.threads.setStatus"] = 1.2
    model_server.reply("Here you go.", ttft_s=1.0)
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hello")
        await _deliver_all(slack_server, bot.url, post.events)
        await bot.idle()

    thinking = [c for c in slack_server.calls_to("assistant.threads.setStatus")
                if c.params.get("status")]
    first_write = min(c.at for c in slack_server.calls
                      if c.method in ("chat.postMessage", "chat.startStream"))
    assert thinking and thinking[0].at < first_write
    # The answer was ready when the status landed; one after the other would add the
    # model's whole 1 s to first token.
    assert first_write - thinking[0].at < 0.4
    [reply] = slack_server.bot_replies(CHANNEL, post.ts)
    assert reply.text.strip() == "Here you go."
    assert slack_server.status(CHANNEL, post.ts) == ""


async def test_a_thread_slack_will_not_take_a_reply_in_frees_the_bot_at_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # The channel was archived between the question and the answer: every write is
    # refused. The turn must end (not retry forever holding the thread), stop paying
    # for tokens, and leave the bot answering elsewhere.
    slack_server.add_user("U0ALICE", "Alice")
    model_server.reply("word " * 400, tokens_per_s=100)
    model_server.reply("Fine here.")
    async with running_bot(slack_server, model_server, tmp_path, speed=10) as bot:
        post = slack_server.user_post("C0GONE", "U0ALICE", f"{slack_server.mention} hi")
        slack_server.cfg.archived_channels.add("C0GONE")
        await _deliver_all(slack_server, bot.url, post.events)
        async with asyncio.timeout(15):
            await bot.idle()
        refused = [c for c in slack_server.calls if c.error == "is_archived"]
        elsewhere = slack_server.user_post(CHANNEL, "U0ALICE", f"{slack_server.mention} hello")
        await _deliver_all(slack_server, bot.url, elsewhere.events)
        await bot.idle()

    assert 1 <= len(refused) <= 6  # a few attempts, not a loop
    assert model_server.abandoned_streams == 1  # it stopped paying for tokens
    assert slack_server.bot_replies("C0GONE", post.ts) == []
    assert slack_server.status("C0GONE", post.ts) == ""  # not "is thinking…" for ever
    [reply] = slack_server.bot_replies(CHANNEL, elsewhere.ts)
    assert reply.text.strip() == "Fine here."
