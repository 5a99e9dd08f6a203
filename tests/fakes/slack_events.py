"""Events API deliveries as Slack sends them: envelopes, signatures, retries."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

_event_ids = itertools.count(1)
API_APP_ID = "A0THREADWISE"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def event_callback(event: dict[str, Any], *, team_id: str, bot_user_id: str) -> dict[str, Any]:
    """Wrap an inner event in the outer envelope of an Events API delivery."""
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": API_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{next(_event_ids):010d}",
        "event_time": int(time.time()),
        "authorizations": [{
            "enterprise_id": None, "team_id": team_id, "user_id": bot_user_id,
            "is_bot": True, "is_enterprise_install": False,
        }],
        "is_ext_shared_channel": False,
    }


def user_message(
    *, team: str, channel: str, user: str, text: str, ts: str,
    thread_ts: str | None = None, channel_type: str = "channel",
    files: list[dict[str, Any]] | None = None, event_type: str = "message",
    broadcast: bool = False,
) -> dict[str, Any]:
    """A `message` (or `app_mention`) event for a post by a person; `broadcast`: a
    thread reply also sent to the channel (subtype thread_broadcast)."""
    event: dict[str, Any] = {
        "type": event_type, "user": user, "text": text, "ts": ts, "team": team,
        "channel": channel, "event_ts": ts, "client_msg_id": str(uuid.uuid4()),
    }
    if event_type == "message":
        event["channel_type"] = channel_type
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
        if event_type == "message":
            event["subtype"] = "file_share"
    if broadcast and event_type == "message":
        event["subtype"] = "thread_broadcast"
    return event


def slash_command_form(
    *, command: str, text: str, team_id: str, channel: str, user: str, response_url: str,
    thread_ts: str | None = None,
) -> dict[str, str]:
    """The form fields of a slash command invocation (application/x-www-form-urlencoded)."""
    fields = {
        "token": "legacy-verification-token", "team_id": team_id, "team_domain": "threadwise-test",
        "channel_id": channel, "channel_name": channel.lower(), "user_id": user,
        "user_name": user.lower(), "command": command, "text": text, "api_app_id": API_APP_ID,
        "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": f"{next(_event_ids)}.trigger",
    }
    if thread_ts:
        fields["thread_ts"] = thread_ts
    return fields


def message_action(
    *, callback_id: str, team_id: str, channel: str, user: str, message: dict[str, Any],
    response_url: str,
) -> dict[str, Any]:
    """A message shortcut's interaction payload (sent as the form field `payload`)."""
    return {
        "type": "message_action", "token": "legacy-verification-token",
        "action_ts": f"{time.time():.6f}", "callback_id": callback_id,
        "trigger_id": f"{next(_event_ids)}.trigger", "response_url": response_url,
        "team": {"id": team_id, "domain": "threadwise-test"},
        "user": {"id": user, "username": user.lower(), "team_id": team_id},
        "channel": {"id": channel, "name": channel.lower()},
        "is_enterprise_install": False, "enterprise": None,
        "message_ts": message["ts"], "message": message,
    }


@dataclass(frozen=True, slots=True)
class Delivery:
    status: int
    body: str
    elapsed_s: float


async def sign_and_post_form(app_url: str, fields: dict[str, str], *, secret: str) -> Delivery:
    """POST form fields to the app as Slack sends slash commands and interactions."""
    body = urlencode(fields).encode()
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": signature(secret, stamp, body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.post(
        app_url.rstrip("/") + "/slack/events", data=body, headers=headers
    ) as resp:
        text = await resp.text()
        return Delivery(resp.status, text, time.monotonic() - started)


async def sign_and_post(
    app_url: str, payload: dict[str, Any], *, secret: str,
    retry_num: int | None = None, tamper: bool = False, age_s: float = 0,
) -> Delivery:
    """POST a payload to the app as Slack does, signed with the signing secret.

    tamper=True signs one body and sends another; age_s back-dates the timestamp.
    """
    body = json.dumps(payload).encode()
    stamp = int(time.time() - age_s)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": signature(secret, stamp, body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if tamper:
        body = body.replace(b'"text": "', b'"text": "tampered ', 1)
        if b"tampered" not in body:
            body += b" "
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.post(
        app_url.rstrip("/") + "/slack/events", data=body, headers=headers
    ) as resp:
        text = await resp.text()
        return Delivery(resp.status, text, time.monotonic() - started)
