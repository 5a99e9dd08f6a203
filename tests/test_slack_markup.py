"""Slack markup in, safe Markdown out."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.slack.markup import ZWSP, neutralise, to_markdown
from tests.fakes.slack_state import pings_in

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
NAMES = {"U0BOB": "Bob Builder", "U0ALICE": "alice"}


async def _resolve(user_id: str) -> str:
    return NAMES.get(user_id, user_id)


async def test_a_mention_becomes_readable_markdown_without_the_bots_own_mention() -> None:
    text = json.loads((FIXTURES / "app_mention.json").read_text())["event"]["text"]
    got = await to_markdown(text, bot_user_id="UBOT", resolve=_resolve)
    assert got == (
        "what does <b> mean in [the docs](https://example.com/docs)? cc @Bob Builder @here"
    )


async def test_channels_links_specials_and_entities() -> None:
    text = (
        "see <#C0RANDOM|random> and <https://a.example/x?a=1&amp;b=2> or "
        "<mailto:bob@example.com|bob@example.com>, <!channel> <!everyone> "
        "<!subteam^S0DEV|@devs> <!date^1392734382^{date}|Feb 18, 2014> &amp;lt; &gt;"
    )
    got = await to_markdown(text, bot_user_id="UBOT", resolve=_resolve)
    assert got == (
        "see #random and https://a.example/x?a=1&b=2 or "
        "[bob@example.com](mailto:bob@example.com), @channel @everyone @devs Feb 18, 2014 &lt; >"
    )


async def test_unknown_users_keep_their_id_and_lines_are_kept() -> None:
    got = await to_markdown("<@UBOT>\n<@U0NOBODY> line one\nline two", bot_user_id="UBOT",
                            resolve=_resolve)
    assert got == "@U0NOBODY line one\nline two"


def test_model_output_cannot_ping_anyone() -> None:
    dangerous = (
        "Hey <!channel> and <!here|here> <!everyone> <!subteam^S0DEV> <@U0BOB> <@W0X|x> "
        "<#C0GENERAL> also @here, @channel and @everyone; mail bob@here.com"
    )
    assert len(pings_in(dangerous)) == 9
    safe = neutralise(dangerous)
    assert pings_in(safe) == []
    # Still reads the same to a person: only invisible spaces were added.
    assert safe.replace(ZWSP, "") == dangerous


def test_neutralising_a_longer_text_extends_the_shorter_result() -> None:
    """Streams append suffixes, so neutralise(prefix) must prefix neutralise(text)."""
    text = "ping <!channel> then @here and <@U1> done @everyones"
    for cut in range(len(text) + 1):
        assert neutralise(text).startswith(neutralise(text[:cut]))
