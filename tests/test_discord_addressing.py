"""How people address the bot, and what the model gets to see when they do."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.discord_harness import answer_to, start_bot
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_requests import seen_texts
from tests.fakes.model_server import FakeModelServer


async def test_mentioning_the_bots_own_role_is_a_mention(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    # Typing "@threadwise" offers the bot and the role Discord made for it; alice picks the role.
    model_server.reply("It's 4.")
    async with start_bot(discord_server, model_server, tmp_path):
        channel = discord_server.channel_id()
        role = discord_server.state.bot_role.id
        said = await discord_server.user_says(channel, f"<@&{role}> what's 2+2?",
                                              mentions_bot=False)
        await answer_to(discord_server, said, "It's 4.")
    asked = [t for t in seen_texts(model_server.requests[0].body) if "2+2" in t]
    assert asked == ["Alice: what's 2+2?"]  # the role mention only called the bot
