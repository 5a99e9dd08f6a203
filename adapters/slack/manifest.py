"""The Slack app manifest: exactly the scopes and events this adapter uses."""

from __future__ import annotations

import json
from typing import Any

# Each scope, and the code that needs it.
BOT_SCOPES: dict[str, str] = {
    "app_mentions:read": "app_mention events (someone @mentions the bot)",
    "assistant:write": "assistant.threads.setStatus/setSuggestedPrompts, assistant_thread_started",
    "channels:history": "message.channels, conversations.replies/history: follow-ups and "
                        "summaries in public channels",
    "channels:read": "conversations.info/members: may a summary read this public channel",
    "chat:write": "chat.postMessage, chat.update, chat.startStream/appendStream/stopStream, "
                  "chat.postEphemeral",
    "commands": "the /summarize slash command and the Summarize thread shortcuts",
    "files:read": "downloading attachments from url_private_download; files.info for "
                  "files shared over Slack Connect, which events name by id only",
    "groups:history": "message.groups, conversations.replies/history: private channels",
    "groups:read": "conversations.info/members: is the requester in this private channel",
    "im:history": "message.im: direct messages (the Messages tab)",
    "mpim:history": "message.mpim, conversations.replies/history: group DMs",
    "mpim:read": "conversations.info/members: is the requester in this group DM",
    "users:read": "users.info: speakers' display names",
}

BOT_EVENTS = [
    "app_home_opened",
    "app_mention",
    "assistant_thread_started",
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
]


SHORTCUTS = [
    ("Summarize thread", "summarize_thread",
     "Summarize this thread in the thread, with links to the sources"),
    ("Summarize thread (only me)", "summarize_thread_private",
     "Summarize this thread; only you see the summary"),
]
SLASH_COMMAND = {
    "command": "/summarize",
    "description": "Summarize this channel's last hours, or a thread by its link",
    "usage_hint": "[24h] [private] | <message link> [private]",
    "should_escape": False,
}


def manifest_dict(*, request_url: str | None = None, name: str = "threadwise") -> dict[str, Any]:
    socket_mode = request_url is None
    events: dict[str, Any] = {"bot_events": BOT_EVENTS}
    interactivity: dict[str, Any] = {"is_enabled": True}
    command = dict(SLASH_COMMAND)
    if not socket_mode:
        events = {"request_url": request_url, **events}
        interactivity["request_url"] = request_url
        command["url"] = request_url
    return {
        "display_information": {
            "name": name,
            "description": "An AI assistant for your threads",
            "background_color": "#2c2d30",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "assistant_view": {
                "assistant_description": "Ask questions, share screenshots and PDFs, get answers.",
            },
            "shortcuts": [
                {"name": label, "type": "message", "callback_id": callback, "description": why}
                for label, callback, why in SHORTCUTS
            ],
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": sorted(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """A small YAML writer for the manifest's plain dicts, lists and scalars."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    else:
        for item in value:
            if isinstance(item, dict):
                # "- first: value" then the other keys aligned under it.
                inner = _yaml(item, indent + 1)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def manifest_yaml(*, request_url: str | None = None) -> str:
    guide = [
        "# threadwise Slack app manifest: api.slack.com/apps → Create New App → From a manifest.",
        "# Socket Mode (below): create an app-level token with connections:write and set",
        "#   SLACK_APP_TOKEN=xapp-…; no public URL is needed.",
        "# HTTP mode instead: set socket_mode_enabled: false and add under event_subscriptions",
        "#   request_url: https://YOUR-HOST/slack/events (also as interactivity.request_url",
        "#   and the /summarize command's url), and set SLACK_SIGNING_SECRET.",
        "# After installing, set SLACK_BOT_TOKEN=xoxb-… and run `threadwise check`.",
        "# Bot scopes, each used by:",
        *(f"#   {scope}: {why}" for scope, why in sorted(BOT_SCOPES.items())),
    ]
    if request_url is not None:
        http_note = "# HTTP mode: Slack signs and sends events to request_url below."
        guide = [guide[0], http_note, *guide[6:]]
    return "\n".join(guide + _yaml(manifest_dict(request_url=request_url))) + "\n"
