"""`threadwise manifest slack` and the Slack part of `threadwise check`."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from adapters.slack.manifest import BOT_EVENTS, BOT_SCOPES
from bots.slack_bot import check_slack, slack_manifest
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import bot_settings
from tests.fakes.slack_server import SlackServer

ADAPTER = Path(__file__).parent.parent / "adapters" / "slack"


def _yaml_list(text: str, key: str) -> list[str]:
    block = text.split(f"{key}:\n", 1)[1]
    items = []
    for line in block.splitlines():
        m = re.match(r"\s+- (.*)$", line)
        if not m:
            break
        items.append(json.loads(m.group(1)))
    return items


def test_the_manifest_lists_exactly_the_scopes_and_events_used() -> None:
    text = slack_manifest()
    assert _yaml_list(text, "bot") == sorted(BOT_SCOPES)
    assert _yaml_list(text, "bot_events") == BOT_EVENTS
    assert "socket_mode_enabled: true" in text and "request_url" in text  # guidance for HTTP
    http = slack_manifest("https://bot.example.com/slack/events")
    assert 'request_url: "https://bot.example.com/slack/events"' in http
    assert "socket_mode_enabled: false" in http


def test_every_web_api_method_the_adapter_calls_is_covered_by_a_scope() -> None:
    """A scope for each method we call; none for methods we do not call."""
    needs = {
        "chat_postMessage": "chat:write", "chat_update": "chat:write", "chat_stream": "chat:write",
        "users_info": "users:read", "assistant_threads_setStatus": "assistant:write",
        "assistant_threads_setSuggestedPrompts": "assistant:write",
        "conversations_replies": "channels:history", "conversations_history": "channels:history",
        "conversations_info": "channels:read", "conversations_members": "channels:read",
        "chat_postEphemeral": "chat:write", "files_info": "files:read",
    }
    called: set[str] = set()
    for path in ADAPTER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in needs:
                called.add(node.attr)
    assert called == set(needs)
    assert {needs[m] for m in called} <= set(BOT_SCOPES)


async def test_check_reports_the_token_and_a_missing_scope(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = bot_settings(slack_server, model_server, tmp_path / "tw.db")
    results = await check_slack(settings)
    assert all(r.ok for r in results), results
    slack_server.cfg.scopes.remove("files:read")
    results = await check_slack(settings)
    by_name = {r.name: r for r in results}
    assert by_name["slack bot token"].ok and "UBOT" in by_name["slack bot token"].detail
    scopes = by_name["slack scopes"]
    assert not scopes.ok and "files:read" in scopes.detail and "reinstall" in scopes.detail


async def test_check_reports_a_rejected_token(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = bot_settings(slack_server, model_server, tmp_path / "tw.db",
                            SLACK_BOT_TOKEN="xoxb-wrong")
    [result] = await check_slack(settings)
    assert not result.ok and "invalid_auth" in result.detail
