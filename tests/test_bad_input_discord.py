"""Bad input through the real Discord bot: a hostile attachment corpus and odd text.

Each file gets its own named refusal or is used for what its bytes are (never for what
its name or Content-Type claims); the message itself is still answered.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes import bad_files
from tests.fakes.discord_harness import replies_to, start_bot
from tests.fakes.discord_server import DiscordServer, Upload
from tests.fakes.model_requests import image_sizes, image_urls
from tests.fakes.model_server import FakeModelServer


def shown(server: DiscordServer, message_id: str) -> str:
    return "\n".join(m["content"] for m in replies_to(server, message_id))


async def test_hostile_and_broken_attachments_each_get_a_named_outcome(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    server = discord_server
    uploads = [
        Upload("huge.png", b"\x89PNG", "image/png", declared_size=100_000_000),
        Upload("bomb.png", bad_files.bomb_png(), "image/png"),
        Upload("broken.jpg", bad_files.corrupt_jpeg(), "image/jpeg"),
        Upload("empty.png", b"", "image/png"),
        Upload("page.png", bad_files.LOGIN_PAGE, "image/png"),  # the CDN served an error page
        Upload("clip.png", bad_files.jpeg(), "video/mp4"),  # declared as video: never fetched
        Upload("notes.png", bad_files.png(), "text/plain"),  # a PNG served as text: used
        Upload("dance.gif", bad_files.animated_gif(), "image/gif"),  # first frame, with a note
    ]
    model_server.reply("Read what I could.")
    async with start_bot(server, model_server, tmp_path):
        said = await server.user_says(server.channel_id(), "check these", attachments=uploads)
        await server.until(lambda: "Read what I could." in shown(server, said))
    text = shown(server, said)
    expected = {
        "huge.png": "is 100.0 MB; the limit is 21.0 MB",  # MAX_FILE_BYTES: 20 MiB
        "bomb.png": "image is too large to decode safely (400 megapixels)",
        "broken.jpg": "could not be read as an image: corrupt or truncated JPEG",
        "empty.png": "is empty",
        "page.png": "looks like an HTML page, not the file itself",
        "clip.png": "is a video/mp4 file, which I can't read",
    }
    for name, reason in expected.items():
        assert f"I couldn't use {name}: {reason}" in text, (name, text)
    assert "notes.png" not in text
    assert "dance.gif is animated; I can only see its first frame (of 4)" in text
    assert len(image_urls(model_server.requests[0].body)) == 2  # notes.png and the GIF frame
    fetched = {r.path.rsplit("/", 1)[-1] for r in server.cdn_requests}
    assert "huge.png" not in fetched and "clip.png" not in fetched  # refused before download
    assert not any(r.had_authorization for r in server.cdn_requests)  # no token to the CDN


async def test_a_cut_off_gif_is_refused_by_name_and_an_odd_exif_photo_is_used(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    server = discord_server
    uploads = [
        Upload("notes.txt", b"the launch is on Friday", "text/plain"),
        Upload("cut.gif", bad_files.cut_gif(), "image/gif"),  # next frame cut off
        Upload("sideways.jpg", bad_files.odd_exif_jpeg(), "image/jpeg"),
    ]
    model_server.reply("Friday, and a photo.")
    async with start_bot(server, model_server, tmp_path):
        said = await server.user_says(server.channel_id(), "when?", attachments=uploads)
        await server.until(lambda: "Friday, and a photo." in shown(server, said))
    assert shown(server, said) == (
        "_I couldn't use cut.gif: could not be read as an image: corrupt or truncated GIF_"
        "\n\nFriday, and a photo."
    )
    body = model_server.requests[0].body
    assert "the launch is on Friday" in str(body["messages"])
    assert image_sizes(body) == [(48, 64)]  # the sideways photo, turned upright


async def test_fifty_attachments_are_read_up_to_the_limit_with_a_note(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    server = discord_server
    uploads = [Upload(f"pic{i:02d}.png", bad_files.png(10 + i, 10), "image/png")
               for i in range(50)]
    model_server.reply("Eight seen.")
    async with start_bot(server, model_server, tmp_path):
        said = await server.user_says(server.channel_id(), "all of them", attachments=uploads)
        await server.until(lambda: "Eight seen." in shown(server, said))
    text = shown(server, said)
    assert "I only read the first 8 attachments; skipped 42: pic08.png" in text
    assert len(server.cdn_requests) == 8
    assert len(image_urls(model_server.requests[0].body)) == 8


async def test_unicode_edge_cases_arrive_intact_and_nothing_pings(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    server = discord_server
    text = "שלום 👨‍👩‍👧‍👦 مرحبا \u202e reversed\x00nul @everyone"
    async with start_bot(server, model_server, tmp_path):
        said = await server.user_says(server.channel_id(), text)
        await server.until(lambda: "echo: " in shown(server, said))
    [reply] = replies_to(server, said)
    assert "שלום 👨‍👩‍👧‍👦 مرحبا \u202e reversed" in reply["content"]
    assert "@everyone" in reply["content"]
    writes = [w for w in server.writes if w.channel_id == server.channel_id()]
    assert writes and all((w.allowed_mentions or {}).get("parse") == [] for w in writes)
