"""Which Slack events get an answer, and what the core receives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.events import BotIdentity, classify, file_refs, thread_key

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
ME = BotIdentity(user_id="UBOT", bot_id="BBOT", team_id="T0TEAM")


def _event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())["event"]
    return event


def _action(name: str, kind: str = "message", **kw: Any) -> str:
    options: dict[str, Any] = {"allowed_channels": (), "follow_threads": True, **kw}
    return classify(_event(name), kind=kind, me=ME, **options).action


def test_mentions_and_dms_are_answered() -> None:
    assert _action("app_mention", "app_mention") == "answer"
    assert _action("message_im") == "answer"
    assert _action("file_share_im") == "answer"


def test_one_post_with_a_mention_is_answered_once() -> None:
    """Slack sends `message` and `app_mention` for it; only app_mention is used."""
    assert _action("message_mention_in_channel") == "ignore"
    assert _action("app_mention", "app_mention") == "answer"


@pytest.mark.parametrize(
    "name", ["message_changed", "message_deleted", "bot_message", "own_reply"]
)
def test_edits_deletions_and_bot_messages_are_ignored(name: str) -> None:
    assert _action(name) == "ignore"


def test_thread_replies_are_followed_only_when_configured() -> None:
    assert _action("message_thread_reply") == "follow"
    assert _action("message_thread_reply", follow_threads=False) == "ignore"


def test_allowed_channels_limit_where_the_bot_answers() -> None:
    """Outside them, whoever addresses the bot is told so; other messages are ignored."""
    assert _action("app_mention", "app_mention", allowed_channels=("C0OTHER",)) == "refuse"
    assert _action("message_im", allowed_channels=("C0OTHER",)) == "refuse"
    assert _action("message_mention_in_channel", allowed_channels=("C0OTHER",)) == "ignore"
    assert _action("message_thread_reply", allowed_channels=("C0OTHER",)) == "ignore"
    assert _action("app_mention", "app_mention", allowed_channels=("C0GENERAL",)) == "answer"


def test_thread_key_uses_the_thread_root_or_starts_one() -> None:
    top = thread_key(_event("app_mention"), "T0TEAM")
    reply = thread_key(_event("message_thread_reply"), "T0TEAM")
    assert top == reply  # the follow-up lands in the thread the mention started
    assert str(top) == "slack:T0TEAM:C0GENERAL:1718000000.000100"


def test_files_become_refs_with_declared_size_and_type() -> None:
    refs = file_refs(_event("file_share_im")["files"])
    assert [(r.name, r.declared_size, r.declared_type) for r in refs] == [
        ("screen shot.png", 48213, "image/png")
    ]
    assert refs[0].url.endswith("/download/screen_shot.png")
