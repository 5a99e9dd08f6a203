"""The emulator's payloads keep the documented Discord shapes (tests/fixtures/discord/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.discord.markup import convert, quoted
from tests.fakes.discord_server import DiscordServer, Upload

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
OPTIONAL = {"_source", "nonce", "guild"}  # sent by Discord only sometimes


def documented(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def missing_keys(documented_shape: dict[str, Any], ours: dict[str, Any]) -> set[str]:
    return set(documented_shape) - OPTIONAL - set(ours)


async def test_message_create_has_every_documented_field() -> None:
    server = DiscordServer()
    channel = server.channel_id()
    first = await server.user_says(channel, "The answer is 42.", mentions_bot=False)
    await server.user_says(channel, "why 42?", reply_to=first,
                           attachments=[Upload("chart.png", b"\x89PNG", "image/png")])
    event, ours = server.gateway.dispatched[-1]
    shape = documented("message_create.json")
    assert event == "MESSAGE_CREATE"
    assert missing_keys(shape, ours) == set()
    assert missing_keys(shape["member"], ours["member"]) == set()
    assert missing_keys(shape["attachments"][0], ours["attachments"][0]) - {"width", "height"} \
        == set()
    assert missing_keys(shape["message_reference"], ours["message_reference"]) == set()
    assert ours["type"] == shape["type"] == 19


async def test_interaction_create_has_every_documented_field() -> None:
    server = DiscordServer()
    server.state.global_commands = [{"id": "1", "name": "ask", "options": []}]
    await server.invoke_command("ask", {"prompt": "what is this?"},
                                attachments={"image": Upload("photo.jpg", b"\xff\xd8\xff")})
    event, ours = server.gateway.dispatched[-1]
    shape = documented("interaction_create.json")
    assert event == "INTERACTION_CREATE"
    assert missing_keys(shape, ours) == set()
    assert missing_keys(shape["member"], ours["member"]) == set()
    assert missing_keys(shape["data"], ours["data"]) == set()
    assert [o["type"] for o in ours["data"]["options"]] == [3, 11]


def test_mentions_become_names_and_the_bots_own_mention_is_dropped() -> None:
    text = convert(
        "<@1>  hey <@!2>, ask <@&3> in <#4> :) <:party:55> <@9>",
        bot_id=1, users={2: "Bob"}, roles={3: "Admins"}, channels={4: "general"},
    )
    assert text == "hey @Bob, ask @Admins in #general :) :party: @unknown-user"


def test_a_quoted_message_keeps_its_author_on_every_line() -> None:
    assert quoted("Bob", "line one\nline two") == "> Bob: line one\n> line two\n"
