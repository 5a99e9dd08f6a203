"""The Discord ChatPort against the emulator, through unmodified discord.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.discord.port import AttachmentIndex, DiscordPort
from core.ports import FileRefused
from core.types import FileRef, ThreadKey
from tests.fakes.discord_harness import RecordingClient, connected_client
from tests.fakes.discord_server import DiscordServer, Upload


@pytest_asyncio.fixture
async def client(discord_server: DiscordServer) -> AsyncIterator[RecordingClient]:
    async with connected_client(discord_server) as connected:
        yield connected


def channel_key(server: DiscordServer, root: str = "1") -> ThreadKey:
    return ThreadKey("discord", server.guild_id, server.channel_id(), root)


async def test_limits_share_one_bucket_per_channel(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    port = DiscordPort(client, AttachmentIndex())
    one = port.limits(channel_key(discord_server, "10"))
    other_chain = port.limits(channel_key(discord_server, "20"))
    assert one.max_chars == 2000
    assert one.bucket == other_chain.bucket == f"discord:{discord_server.channel_id()}"
    # 5 writes per 5 s window: the highest sustained rate Discord allows (1/s) and no
    # higher, evenly spaced (burst 1), so no window that opens at a write holds a sixth.
    assert (one.bucket_rate, one.bucket_burst) == (1.0, 1)


async def test_post_replies_to_the_message_and_pings_nobody(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    port = DiscordPort(client, AttachmentIndex())
    channel = discord_server.channel_id()
    asked = await discord_server.user_says(channel, "hi")
    alice = discord_server.user("alice").id
    posted = await port.post(
        channel_key(discord_server), f"@everyone look, <@{alice}>!", reply_to=asked
    )
    shown = discord_server.message(posted)
    assert shown["content"] == f"@everyone look, <@{alice}>!"
    assert shown["message_reference"]["message_id"] == asked
    [write] = discord_server.writes
    assert write.allowed_mentions is not None
    assert write.allowed_mentions["parse"] == []
    assert not write.allowed_mentions.get("replied_user")
    assert write.pings == []


async def test_edit_then_finish_with_the_same_text_writes_once(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    port = DiscordPort(client, AttachmentIndex())
    key = channel_key(discord_server)
    posted = await port.post(key, "Hello")
    await port.edit(key, posted, "Hello, world")
    await port.finish(key, posted, "Hello, world")
    assert [w.kind for w in discord_server.writes] == ["post", "edit"]
    assert discord_server.message(posted)["content"] == "Hello, world"
    assert all(w.allowed_mentions is not None and w.allowed_mentions["parse"] == []
               for w in discord_server.writes)


async def test_typing_shows_until_the_first_post(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    port = DiscordPort(client, AttachmentIndex())
    key = channel_key(discord_server)
    await port.set_status(key, "is thinking…")
    await discord_server.until(lambda: bool(discord_server.typing))
    assert discord_server.typing[0][1] == discord_server.channel_id()
    assert port.typing_active(key)
    await port.post(key, "Here you go")
    assert not port.typing_active(key)
    await port.set_status(key, "again")
    await port.set_status(key, None)
    assert not port.typing_active(key)


async def test_oversized_attachment_is_refused_before_any_download(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    index = AttachmentIndex()
    port = DiscordPort(client, index)
    channel = discord_server.channel_id()
    upload = Upload("huge.png", b"\x89PNG small really", "image/png", declared_size=50_000_000)
    said = await discord_server.user_says(channel, "look", attachments=[upload])
    await discord_server.until(lambda: any(str(m.id) == said for m in client.received))
    [attachment] = client.received_id(said).attachments
    ref = index.add(attachment)
    assert ref.declared_size == 50_000_000
    with pytest.raises(FileRefused) as refused:
        await port.fetch_file(ref, max_bytes=10_000_000)
    assert refused.value.name == "huge.png"
    assert "50.0 MB" in refused.value.reason
    assert discord_server.cdn_requests == []


async def test_attachment_is_read_from_the_cdn_without_the_token(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    index = AttachmentIndex()
    port = DiscordPort(client, index)
    channel = discord_server.channel_id()
    said = await discord_server.user_says(
        channel, "notes", attachments=[Upload("notes.txt", b"line one\nline two", "text/plain")]
    )
    await discord_server.until(lambda: any(str(m.id) == said for m in client.received))
    ref = index.add(client.received_id(said).attachments[0])
    assert await port.fetch_file(ref, max_bytes=1000) == b"line one\nline two"
    [request] = discord_server.cdn_requests
    assert request.path.endswith("/notes.txt")
    assert not request.had_authorization


async def test_unknown_or_video_attachments_are_refused_with_their_name(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    index = AttachmentIndex()
    port = DiscordPort(client, index)
    with pytest.raises(FileRefused) as gone:
        await port.fetch_file(FileRef("404", "old.png", "http://x/old.png"), max_bytes=100)
    assert gone.value.name == "old.png"
    said = await discord_server.user_says(
        discord_server.channel_id(), "clip",
        attachments=[Upload("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")],
    )
    await discord_server.until(lambda: any(str(m.id) == said for m in client.received))
    ref = index.add(client.received_id(said).attachments[0])
    with pytest.raises(FileRefused) as video:
        await port.fetch_file(ref, max_bytes=10_000)
    assert video.value.name == "clip.mp4"
    assert discord_server.cdn_requests == []


async def test_a_429_without_via_is_waited_out_and_the_write_lands(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    discord_server.set_write_limit(5, 0.4)
    port = DiscordPort(client, AttachmentIndex())
    channel = discord_server.channel_id()
    discord_server.exhaust_bucket(channel)
    discord_server.send_429_without_via(1)
    posted = await port.post(channel_key(discord_server), "made it")
    assert discord_server.message(posted)["content"] == "made it"
    assert [hit.via for hit in discord_server.rate_limits] == [False]


async def test_reply_into_a_thread_opened_from_the_message_has_no_cross_channel_reference(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    port = DiscordPort(client, AttachmentIndex())
    channel = discord_server.channel_id()
    said = await discord_server.user_says(channel, "start a thread")
    await discord_server.until(lambda: any(str(m.id) == said for m in client.received))
    thread = await client.received_id(said).create_thread(name="chat")
    key = ThreadKey("discord", discord_server.guild_id, str(thread.id), str(thread.id))
    posted = await port.post(key, "in the thread", reply_to=said)
    shown = discord_server.message(posted)
    assert shown["channel_id"] == str(thread.id) == said
    assert "message_reference" not in shown


async def test_a_post_retried_with_its_nonce_gets_its_first_message_brought_up_to_date(
    discord_server: DiscordServer, client: RecordingClient
) -> None:
    """The first try was created but its answer lost; the retry, with newer text and
    the same nonce, gets that message back from Discord and edits it."""
    port = DiscordPort(client, AttachmentIndex())
    key = channel_key(discord_server)
    discord_server.lose_post_answers("reset")
    with pytest.raises(Exception):  # noqa: B017 - whatever aiohttp raises for a reset
        await port.post(key, "Hello", nonce="n-1")
    again = await port.post(key, "Hello world", nonce="n-1")
    assert [m["id"] for m in discord_server.bot_messages(discord_server.channel_id())] == [again]
    assert discord_server.message(again)["content"] == "Hello world"
    assert [w.kind for w in discord_server.writes] == ["post", "post-deduped", "edit"]
