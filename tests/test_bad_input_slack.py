"""Bad input through the real Slack bot: broken deliveries, odd text, hostile files.

Every case has a named outcome (a 4xx, an ignored event, a refusal naming the file, a
warning in the reply) and the bot keeps answering afterwards. Never a 500 or a crash.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import bad_files
from tests.fakes.fault_harness import SlackRig, shown, slack_rig
from tests.fakes.model_requests import image_sizes
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_events import signature
from tests.fakes.slack_server import SlackServer

CHANNEL = "C0GENERAL"


async def post_signed(rig: SlackRig, body: bytes,
                      content_type: str = "application/json") -> tuple[int, str]:
    """POST a body to /slack/events with a valid signature, whatever the body is."""
    stamp = int(time.time())
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(stamp),
               "X-Slack-Signature": signature(rig.slack.signing_secret, stamp, body)}
    async with aiohttp.ClientSession() as http, http.post(
        rig.bot.url + "/slack/events", data=body, headers=headers
    ) as resp:
        return resp.status, await resp.text()


async def still_answers(rig: SlackRig) -> None:
    post = await rig.ask("still there?")
    await rig.answered(post)
    assert "still there?" in shown(rig.replies(post))


def envelope(rig: SlackRig, event: dict[str, Any]) -> bytes:
    return json.dumps(rig.slack.wrap_event(event)).encode()


MENTION = {"type": "app_mention", "user": "U0ALICE", "text": "<@UBOT> hi",
           "ts": "1700000000.000100", "channel": CHANNEL, "team": "T0TEAM"}

BROKEN_BODIES: dict[str, tuple[bytes, str]] = {
    "truncated JSON": (b'{"type": "event_callback", "event": {"type": "app_men',
                       "application/json"),
    "not JSON at all": (b"\x00\xff\xfe garbage", "application/json"),
    "empty body": (b"", "application/json"),
    "a JSON array": (b"[1, 2, 3]", "application/json"),
    "a JSON string": (b'"hello"', "application/json"),
    "form without payload": (b"a=1&b=2", "application/x-www-form-urlencoded"),
    "form with broken payload": (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
}


async def test_malformed_and_truncated_bodies_with_valid_signatures_get_4xx_or_are_ignored(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        statuses = {name: (await post_signed(rig, body, kind))[0]
                    for name, (body, kind) in BROKEN_BODIES.items()}
        await rig.bot.idle()
        await still_answers(rig)
    assert statuses == {
        "truncated JSON": 400, "not JSON at all": 401,  # not UTF-8: cannot be Slack's
        "empty body": 404, "a JSON array": 400, "a JSON string": 400,
        "form without payload": 404, "form with broken payload": 400,
    }
    assert len(model_server.requests) == 1  # only the final, real question reached the model
    assert [m.text for m in slack_server.state.all_messages() if m.bot_id][:-1] == []


@pytest.mark.parametrize("missing", ["ts", "channel", "user", "text", "event"])
async def test_an_event_missing_a_field_is_ignored_without_an_error(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path, missing: str
) -> None:
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        event = {k: v for k, v in MENTION.items() if k != missing}
        payload = rig.slack.wrap_event(event)
        if missing == "event":
            del payload["event"]
        status, _ = await post_signed(rig, json.dumps(payload).encode())
        await rig.bot.idle()
        await still_answers(rig)
    assert status < 500
    answered = [m for m in slack_server.state.all_messages() if m.bot_id]
    if missing in ("ts", "channel", "user", "event"):
        assert len(answered) == 1  # nowhere to answer, or nobody to answer: ignored
    else:
        assert len(answered) == 2  # a mention with no text is still a mention


async def test_unknown_event_types_are_acknowledged_and_ignored(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        statuses = [
            (await post_signed(rig, envelope(rig, event)))[0]
            for event in (
                {"type": "reaction_added", "user": "U0ALICE", "reaction": "tada",
                 "item": {"type": "message", "channel": CHANNEL, "ts": "1.2"}},
                {"type": "a_type_slack_invents_next_year", "whatever": [1, {"x": None}]},
                {"type": "message", "subtype": "channel_join", "user": "U0ALICE",
                 "channel": CHANNEL, "ts": "1700000000.000200", "text": "joined"},
            )
        ]
        unknown_callback = {"type": "some_new_envelope", "token": "x", "team_id": "T0TEAM"}
        statuses.append((await post_signed(rig, json.dumps(unknown_callback).encode()))[0])
        await rig.bot.idle()
        await still_answers(rig)
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] < 500
    assert len(model_server.requests) == 1


async def test_a_40000_character_message_is_answered_with_all_of_it_seen(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    text = ("lorem ipsum dolor sit amet " * 1500)[:39_990] + " THE END"
    model_server.reply("That is long.")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        post = await rig.ask(text)
        await rig.answered(post)
        [reply] = rig.replies(post)
        history = await rig.history(post)
    assert reply.text == "That is long."
    assert "THE END" in str(model_server.requests[0].body["messages"])
    assert history[0].text == text


async def test_a_message_too_big_for_the_context_is_cut_in_the_middle_with_a_note(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    text = "START " + "many words here " * 2500 + " THE END"
    model_server.reply("I read what fit.")
    async with slack_rig(slack_server, model_server, tmp_path,
                         MODEL_CONTEXT_TOKENS=4000, MODEL_MAX_COMPLETION_TOKENS=500) as rig:
        post = await rig.ask(text)
        await rig.answered(post)
        [reply] = rig.replies(post)
    assert reply.text.endswith("I read what fit.")
    assert reply.text.startswith("_")  # the note comes first, in italics
    seen = str(model_server.requests[0].body["messages"])
    assert "START" in seen and "THE END" in seen and len(seen) < len(text)


@pytest.mark.parametrize("text", [
    "مرحبا، كيف حالك؟ שלום עולם",  # right-to-left
    "family: 👨‍👩‍👧‍👦, flag: 🏳️‍🌈, skin tones: 👋🏽👍🏿",  # ZWJ sequences and modifiers
    "before\x00after and a lone \ufeff BOM and \u202e override",  # NUL and format controls
])
async def test_unicode_edge_cases_reach_the_model_and_the_reply_intact(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path, text: str
) -> None:
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        post = await rig.ask(text)
        await rig.answered(post)
        [reply] = rig.replies(post)
        history = await rig.history(post)
    visible = text.replace("\x00", "")
    assert visible.replace("\x00", "") in reply.text.replace("\x00", "")
    assert history[0].text.replace("\x00", "") == visible
    assert len(model_server.requests) == 1


def hosted(slack: SlackServer, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
    return slack.host_file(name, data, mimetype)


async def test_hostile_and_broken_files_each_get_a_named_refusal_and_a_reply(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack = slack_server
    huge = hosted(slack, "huge.bin", b"x", "application/octet-stream")
    huge["size"] = 100_000_000  # Slack announces the real size: refused before download
    liar = hosted(slack, "liar.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 25_000_000, "image/png")
    liar["size"] = 1_000  # claims 1 KB, streams 25 MB: stopped at the cap
    files = [
        huge, liar,
        hosted(slack, "bomb.png", bad_files.bomb_png(), "image/png"),
        hosted(slack, "broken.jpg", bad_files.corrupt_jpeg(), "image/jpeg"),
        hosted(slack, "empty.png", b"", "image/png"),
        hosted(slack, "page.png", bad_files.LOGIN_PAGE, "image/png"),
        slack.foreign_file("elsewhere.png"),
        slack.redirected_file("moved.png", slack.foreign.base_url + "/stolen.png"),
    ]
    model_server.reply("I looked at what I could.")
    async with slack_rig(slack_server, model_server, tmp_path, MAX_FILE_BYTES=20_000_000) as rig:
        post = slack.user_post(CHANNEL, "U0ALICE", f"{slack.mention} check these", files=files)
        for event in post.events:
            assert (await slack.deliver(rig.bot.url, event)).status == 200
        await rig.answered(post)
        text = shown(rig.replies(post))
    expected = {
        "huge.bin": "is 100.0 MB; the limit is 20.0 MB",
        "liar.png": "is 25.0 MB; the limit is 20.0 MB",  # Content-Length, before reading
        "bomb.png": "image is too large to decode safely (400 megapixels)",
        "broken.jpg": "could not be read as an image: corrupt or truncated JPEG",
        "empty.png": "is empty",
        "page.png": "Slack returned a login page instead of the file",
        "elsewhere.png": "its download link points to 127.0.0.2, which is not an allowed "
                         "file host (SLACK_FILE_HOSTS), so I did not send the bot token there",
        "moved.png": "Slack redirected the download to 127.0.0.2",
    }
    for name, reason in expected.items():
        assert f"I couldn't use {name}: {reason}" in text, (name, text)
    assert text.rstrip().endswith("I looked at what I could.")
    assert slack.foreign.requests == []  # the foreign host never saw a request, let alone a token
    assert len(model_server.requests) == 1


async def test_a_cut_off_gif_is_refused_by_name_and_an_odd_exif_photo_is_used(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack = slack_server
    files = [
        hosted(slack, "notes.txt", b"the launch is on Friday", "text/plain"),
        hosted(slack, "cut.gif", bad_files.cut_gif(), "image/gif"),  # next frame cut off
        hosted(slack, "sideways.jpg", bad_files.odd_exif_jpeg(), "image/jpeg"),
    ]
    model_server.reply("Friday, and a photo.")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        post = slack.user_post(CHANNEL, "U0ALICE", f"{slack.mention} when?", files=files)
        for event in post.events:
            assert (await slack.deliver(rig.bot.url, event)).status == 200
        await rig.answered(post)
        text = shown(rig.replies(post))
    assert text == (
        "_I couldn't use cut.gif: could not be read as an image: corrupt or truncated GIF_"
        "\n\nFriday, and a photo."
    )
    body = model_server.requests[0].body
    assert "the launch is on Friday" in str(body["messages"])
    assert image_sizes(body) == [(48, 64)]  # the sideways photo, turned upright


async def test_fifty_attachments_are_read_up_to_the_limit_with_a_note(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack = slack_server
    files = [hosted(slack, f"shot{i:02d}.png", bad_files.png(10 + i, 10), "image/png")
             for i in range(50)]
    model_server.reply("Eight pictures seen.")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        post = slack.user_post(CHANNEL, "U0ALICE", f"{slack.mention} all of these", files=files)
        for event in post.events:
            assert (await slack.deliver(rig.bot.url, event)).status == 200
        await rig.answered(post)
        text = shown(rig.replies(post))
    assert "I only read the first 8 attachments; skipped 42: shot08.png" in text
    assert len(slack.files.requests) == 8  # the rest were never downloaded
    body = str(model_server.requests[0].body["messages"])
    assert body.count("data:image/") == 8
    assert text.rstrip().endswith("Eight pictures seen.")


async def test_a_wrong_content_type_and_an_animated_gif_are_judged_by_their_bytes(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    slack = slack_server
    files = [
        hosted(slack, "photo.pdf", bad_files.jpeg(), "application/pdf"),  # a JPEG called PDF
        hosted(slack, "dance.gif", bad_files.animated_gif(), "image/gif"),
    ]
    model_server.reply("Two images.")
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        post = slack.user_post(CHANNEL, "U0ALICE", f"{slack.mention} look", files=files)
        for event in post.events:
            assert (await slack.deliver(rig.bot.url, event)).status == 200
        await rig.answered(post)
        text = shown(rig.replies(post))
    assert text.endswith("Two images.")
    assert "dance.gif is animated; I can only see its first frame (of 4)" in text
    assert "photo.pdf" not in text, "a mislabelled but valid image needs no warning"
    body = str(model_server.requests[0].body["messages"])
    assert body.count("data:image/jpeg;base64,") == 1  # the 'PDF' is used as the photo it is
    assert body.count("data:image/png;base64,") == 1  # the GIF's first frame, as a still
