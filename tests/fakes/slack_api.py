"""The Web API methods the emulator answers, with Slack's validation rules and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.known_secrets import SLACK_APP_TOKEN, SLACK_BOT_TOKEN
from tests.fakes.slack_conversations import Conversations
from tests.fakes.slack_state import Message, WorkspaceState

TEXT_LIMIT = 4_000  # chat.postMessage / chat.update `text` (msg_too_long beyond)
MARKDOWN_LIMIT = 12_000  # `markdown_text`, and one streamed message in total

Params = dict[str, Any]
Answer = dict[str, Any]


class ApiError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class SlackUser:
    id: str
    name: str
    display_name: str
    real_name: str = ""
    is_bot: bool = False


@dataclass
class WorkspaceConfig:
    team_id: str = "T0TEAM"
    team_name: str = "Threadwise Test"
    bot_user_id: str = "UBOT"
    bot_id: str = "BBOT"
    bot_token: str = SLACK_BOT_TOKEN
    app_token: str = SLACK_APP_TOKEN
    scopes: list[str] = field(default_factory=lambda: [
        "app_mentions:read", "assistant:write", "channels:history", "channels:read",
        "chat:write", "commands", "files:read", "groups:history", "groups:read", "im:history",
        "mpim:history", "mpim:read", "users:read",
    ])
    stream_expiry_s: float = 300.0
    disabled_methods: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)  # method -> seconds before answering
    archived_channels: set[str] = field(default_factory=set)  # writes there: is_archived


def _chunks_text(value: Any) -> str:
    if value is None:
        return ""
    chunks = json.loads(value) if isinstance(value, str) else value
    return "".join(
        str(c.get("text", "")) for c in chunks
        if isinstance(c, dict) and c.get("type") == "markdown_text"
    )


def _content(p: Params) -> tuple[str, str]:
    """(field, text) of a post or update, enforcing Slack's exclusivity and length rules."""
    md = p.get("markdown_text")
    if md is not None:
        if p.get("text") or p.get("blocks"):
            raise ApiError("markdown_text_conflict")
        if len(md) > MARKDOWN_LIMIT:
            raise ApiError("msg_too_long")
        return "markdown_text", str(md)
    text = p.get("text")
    if text is None and not p.get("blocks"):
        raise ApiError("no_text")
    if text is not None and len(text) > TEXT_LIMIT:
        raise ApiError("msg_too_long")
    return "text", str(text or "")


class SlackWebApi:
    def __init__(self, cfg: WorkspaceConfig, state: WorkspaceState) -> None:
        self.cfg = cfg
        self.state = state
        self.users: dict[str, SlackUser] = {
            cfg.bot_user_id: SlackUser(cfg.bot_user_id, "threadwise", "threadwise", is_bot=True)
        }
        self.socket_url: Callable[[], str] = lambda: ""
        self.file_objects: dict[str, Answer] = {}  # files.info: id -> full file object
        self.refuse_metadata = False  # a workspace that will not take message metadata
        self._methods: dict[str, Callable[[Params], Answer]] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setSuggestedPrompts": self._set_prompts,
            "apps.connections.open": self._connections_open,
            "files.info": self._files_info,
        }
        self.conversations = Conversations(
            state, cfg.bot_user_id, lambda: list(self.users), ApiError
        )
        self._methods.update(self.conversations.methods())

    def call(self, method: str, token: str | None, p: Params) -> Answer:
        if method not in self._methods or method in self.cfg.disabled_methods:
            raise ApiError("unknown_method")
        wanted = self.cfg.app_token if method == "apps.connections.open" else self.cfg.bot_token
        if not token:
            raise ApiError("not_authed")
        if token != wanted:
            known = token in (self.cfg.app_token, self.cfg.bot_token)
            raise ApiError("not_allowed_token_type" if known else "invalid_auth")
        if method.startswith("chat.") and p.get("channel") in self.cfg.archived_channels:
            raise ApiError("is_archived")
        return self._methods[method](p)

    # -- identity ---------------------------------------------------------------------

    def _auth_test(self, p: Params) -> Answer:
        return {"url": "https://threadwise-test.slack.com/", "team": self.cfg.team_name,
                "user": "threadwise", "team_id": self.cfg.team_id,
                "user_id": self.cfg.bot_user_id, "bot_id": self.cfg.bot_id,
                "is_enterprise_install": False}

    def _users_info(self, p: Params) -> Answer:
        user = self.users.get(str(p.get("user")))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": {"id": user.id, "team_id": self.cfg.team_id, "name": user.name,
                         "real_name": user.real_name, "is_bot": user.is_bot,
                         "profile": {"display_name": user.display_name,
                                     "real_name": user.real_name}}}

    def _connections_open(self, p: Params) -> Answer:
        return {"url": self.socket_url()}

    # -- files ------------------------------------------------------------------------

    def _files_info(self, p: Params) -> Answer:
        if "files:read" not in self.cfg.scopes:
            raise ApiError("missing_scope")
        obj = self.file_objects.get(str(p.get("file")))
        if obj is None:  # unknown, or not visible to this app
            raise ApiError("file_not_found")
        return {"file": obj, "comments": [], "response_metadata": {"next_cursor": ""}}

    # -- messages ---------------------------------------------------------------------

    def _bot_message(self, channel: str, thread_ts: str | None, text: str, fld: str) -> Message:
        return self.state.add(Message(
            channel=channel, ts=self.state.next_ts(), thread_ts=thread_ts,
            user=self.cfg.bot_user_id, bot_id=self.cfg.bot_id, text=text, kind=fld,
        ))

    def _post(self, p: Params) -> Answer:
        channel = str(p.get("channel") or "")
        if not channel:
            raise ApiError("channel_not_found")
        fld, text = _content(p)
        thread_ts = p.get("thread_ts") or None
        metadata = p.get("metadata")
        if isinstance(metadata, str):  # a form-encoded call sends it as JSON text
            metadata = json.loads(metadata)
        if metadata is not None and (self.refuse_metadata or not (
            isinstance(metadata, dict) and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        )):
            raise ApiError("invalid_metadata_format")
        msg = self._bot_message(channel, thread_ts, text, fld)
        msg.metadata = metadata
        return {"channel": channel, "ts": msg.ts, "message": msg.as_api()}

    def _existing(self, p: Params) -> Message:
        msg = self.state.get(str(p.get("channel")), str(p.get("ts")))
        if msg is None:
            raise ApiError("message_not_found")
        return msg

    def _update(self, p: Params) -> Answer:
        msg = self._existing(p)
        if msg.bot_id != self.cfg.bot_id:
            raise ApiError("cant_update_message")
        self._expire(msg)
        if msg.streaming:
            raise ApiError("cant_update_message")
        msg.kind, msg.text = _content(p)
        msg.edits += 1
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text}

    # -- streaming --------------------------------------------------------------------

    def _expire(self, msg: Message) -> None:
        if msg.streaming and time.monotonic() - msg.stream_started > self.cfg.stream_expiry_s:
            msg.streaming = False

    def _stream_text(self, msg: Message | None, p: Params) -> str:
        extra = (p.get("markdown_text") or "") + _chunks_text(p.get("chunks"))
        if len(extra) > MARKDOWN_LIMIT or len((msg.text if msg else "") + extra) > MARKDOWN_LIMIT:
            raise ApiError("msg_too_long")
        return extra

    def _start_stream(self, p: Params) -> Answer:
        channel, thread_ts = str(p.get("channel") or ""), p.get("thread_ts")
        if not channel or not thread_ts:
            raise ApiError("invalid_arguments")
        if not channel.startswith("D") and not (
            p.get("recipient_team_id") and p.get("recipient_user_id")
        ):
            raise ApiError("invalid_arguments")
        text = self._stream_text(None, p)
        msg = self._bot_message(channel, str(thread_ts), text, "stream")
        msg.streaming, msg.stream_started = True, time.monotonic()
        msg.recipient = p.get("recipient_user_id") or None
        return {"channel": channel, "ts": msg.ts}

    def _streaming(self, p: Params) -> Message:
        msg = self._existing(p)
        self._expire(msg)
        if not msg.streaming:
            raise ApiError("message_not_in_streaming_state")
        return msg

    def _append_stream(self, p: Params) -> Answer:
        msg = self._streaming(p)
        msg.text += self._stream_text(msg, p)
        msg.appends += 1
        return {"channel": msg.channel, "ts": msg.ts}

    def _stop_stream(self, p: Params) -> Answer:
        msg = self._streaming(p)
        msg.text += self._stream_text(msg, p)
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_api()}

    # -- assistant --------------------------------------------------------------------

    def _set_status(self, p: Params) -> Answer:
        key = (str(p.get("channel_id")), str(p.get("thread_ts")))
        if "status" not in p:
            raise ApiError("invalid_arguments")
        self.state.statuses.setdefault(key, []).append(str(p["status"]))
        return {}

    def _set_prompts(self, p: Params) -> Answer:
        prompts = p.get("prompts")
        prompts = json.loads(prompts) if isinstance(prompts, str) else prompts
        if not prompts:
            raise ApiError("invalid_arguments")
        key = (str(p.get("channel_id")), str(p.get("thread_ts")))
        self.state.suggested_prompts[key] = list(prompts)
        return {}
