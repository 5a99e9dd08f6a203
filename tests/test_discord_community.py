"""Community controls: allow/block lists, per-user rate, daily token quota, admin bypass."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.discord_harness import answer_to, replies_to, start_bot, usage_reaches
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_server import FakeModelServer

USAGE = {"prompt_tokens": 80, "completion_tokens": 40}


async def test_quota_exhaustion_gets_a_friendly_message_and_admins_bypass_it(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("First answer.", usage=USAGE)
    model_server.reply("Admin answer.", usage=USAGE)
    async with start_bot(
        discord_server, model_server, tmp_path, DISCORD_DAILY_TOKEN_QUOTA=100
    ) as running:
        channel = discord_server.channel_id()
        first = await discord_server.user_says(channel, "question one")
        await answer_to(discord_server, first, "First answer.")
        await usage_reaches(running, 120, user_id=discord_server.user("alice").id)
        second = await discord_server.user_says(channel, "question two")
        await discord_server.until(lambda: bool(replies_to(discord_server, second)))
        [refusal] = replies_to(discord_server, second)
        admin = await discord_server.user_says(channel, "admin question", author="root")
        await answer_to(discord_server, admin, "Admin answer.")
        command = await discord_server.invoke_command("ask", {"prompt": "question three"})
        await discord_server.until(
            lambda: bool(discord_server.interaction_messages(command))
            and "tokens for today" in discord_server.interaction_messages(command)[0]["content"]
        )
    assert "You've used your 100 tokens for today (120 so far)" in refusal["content"]
    assert "resets at 00:00 UTC" in refusal["content"]
    assert len(model_server.requests) == 2


async def test_an_over_quota_user_is_told_once_not_on_every_message(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("First answer.", usage=USAGE)
    async with start_bot(
        discord_server, model_server, tmp_path, DISCORD_DAILY_TOKEN_QUOTA=100
    ) as running:
        channel = discord_server.channel_id()
        first = await discord_server.user_says(channel, "question one")
        await answer_to(discord_server, first, "First answer.")
        await usage_reaches(running, 120, user_id=discord_server.user("alice").id)
        more = [await discord_server.user_says(channel, f"question {n}") for n in range(3)]
        await discord_server.until(lambda: bool(replies_to(discord_server, more[0])))
        marker = await discord_server.user_says(channel, "from bob", author="bob")
        await discord_server.until(lambda: bool(replies_to(discord_server, marker)))
    assert "tokens for today" in replies_to(discord_server, more[0])[0]["content"]
    assert [replies_to(discord_server, m) for m in more[1:]] == [[], []]


async def test_too_many_requests_a_minute_get_one_friendly_warning(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with start_bot(discord_server, model_server, tmp_path, DISCORD_USER_RATE_PER_MIN=2):
        channel = discord_server.channel_id()
        asked = [await discord_server.user_says(channel, f"q{n}") for n in range(4)]
        elsewhere = discord_server.channel_id("random")  # its own write budget: a faster test
        admin = [await discord_server.user_says(elsewhere, f"admin q{n}", author="root")
                 for n in range(3)]
        await discord_server.until(
            lambda: all(replies_to(discord_server, m) for m in (*asked[:3], *admin))
        )
        marker = await discord_server.user_says(elsewhere, "from bob", author="bob")
        await discord_server.until(lambda: bool(replies_to(discord_server, marker)))
    [warning] = replies_to(discord_server, asked[2])
    assert warning["content"].startswith("⏳ You're asking faster than I can keep up")
    assert "2 requests a minute" in warning["content"]
    assert replies_to(discord_server, asked[3]) == [], "the warning is shown once"
    assert len(model_server.requests) == 2 + 3 + 1


async def test_blocked_and_not_allowed_people_and_places_are_ignored(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    general = discord_server.channel_id("general")
    random = discord_server.channel_id("random")
    discord_server.add_user("eve")  # no roles at all
    discord_server.add_user("mallory", roles=["Members", "Muted"])
    settings = {
        "DISCORD_ALLOWED_CHANNELS": general,
        "DISCORD_ALLOWED_ROLES": "Members",
        "DISCORD_BLOCKED_USERS": discord_server.user("bob").id,
        "DISCORD_BLOCKED_ROLES": discord_server.role_id("Muted"),
    }
    async with start_bot(discord_server, model_server, tmp_path, **settings):
        ignored = [
            await discord_server.user_says(random, "wrong channel"),
            await discord_server.user_says(general, "blocked user", author="bob"),
            await discord_server.user_says(general, "no allowed role", author="eve"),
            await discord_server.user_says(general, "blocked role", author="mallory"),
        ]
        refused = await discord_server.invoke_command("usage", author="bob")
        answered = await discord_server.user_says(general, "allowed", author="carol")
        admin = await discord_server.user_says(general, "admin without the role", author="root")
        await discord_server.until(
            lambda: bool(replies_to(discord_server, answered))
            and bool(replies_to(discord_server, admin))
        )
        await discord_server.until(lambda: bool(discord_server.interaction_messages(refused)))
    assert all(replies_to(discord_server, m) == [] for m in ignored)
    assert len(model_server.requests) == 2
    assert discord_server.interaction_messages(refused)[0]["content"] == "I'm not available here."
