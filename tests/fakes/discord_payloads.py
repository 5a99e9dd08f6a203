"""JSON shapes the Discord emulator sends, in the form Discord's API v10 documents them.

Only what discord.py reads is filled in, plus a few fields tests look at. Every builder
returns a fresh dict so callers may mutate it.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
# View Channels, Send Messages, Read Message History, Send in Threads, Use App Commands.
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 38) | (1 << 31)

Json = dict[str, Any]


class Snowflakes:
    """Real-looking ids: time-ordered, so an id also tells when it was made."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def next(self) -> str:
        millis = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((millis << 22) | (next(self._counter) & 0x3FFFFF))


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeUser:
    id: str
    name: str
    display: str
    bot: bool = False
    roles: tuple[str, ...] = ()  # role ids in the test guild

    def payload(self) -> Json:
        return {
            "id": self.id,
            "username": self.name,
            "global_name": self.display,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
        }

    def member(self, *, with_user: bool = False, permissions: int | None = None) -> Json:
        data: Json = {
            "roles": list(self.roles),
            "nick": None,
            "avatar": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class FakeRole:
    id: str
    name: str
    permissions: int
    position: int = 0
    bot_id: str | None = None  # a bot's own role, made by Discord when the bot joins

    def payload(self) -> Json:
        data: Json = {
            "id": self.id,
            "name": self.name,
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.bot_id is not None,
            "mentionable": True,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": self.bot_id}
        return data


@dataclass
class FakeChannel:
    id: str
    name: str
    type: int = 0  # 0 text, 1 DM, 11 public thread
    guild_id: str | None = None
    parent_id: str | None = None
    owner_id: str | None = None  # threads: who started it
    recipient: FakeUser | None = None  # DMs
    message_ids: list[str] = field(default_factory=list)

    def payload(self) -> Json:
        if self.type == 1:
            assert self.recipient is not None
            return {
                "id": self.id,
                "type": 1,
                "last_message_id": None,
                "recipients": [self.recipient.payload()],
            }
        data: Json = {
            "id": self.id,
            "type": self.type,
            "guild_id": self.guild_id,
            "name": self.name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": self.parent_id,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if self.type in (10, 11, 12):
            data.update(
                owner_id=self.owner_id,
                message_count=0,
                member_count=1,
                total_message_sent=0,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_now(),
                    "locked": False,
                    "create_timestamp": iso_now(),
                },
            )
        return data


def guild_payload(
    guild_id: str,
    *,
    name: str,
    owner_id: str,
    roles: list[FakeRole],
    channels: list[FakeChannel],
    threads: list[FakeChannel],
    members: list[FakeUser],
) -> Json:
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": owner_id,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": [r.payload() for r in roles],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "joined_at": "2024-01-01T00:00:00+00:00",
        "large": False,
        "unavailable": False,
        "member_count": len(members),
        "voice_states": [],
        "members": [m.member(with_user=True) for m in members],
        "channels": [c.payload() for c in channels],
        "threads": [t.payload() for t in threads],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def application_payload(app_id: str, owner: FakeUser) -> Json:
    return {
        "id": app_id,
        "name": owner.display,
        "icon": None,
        "description": "threadwise test application",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": owner.payload(),
        "verify_key": "0" * 64,
        "flags": 1 << 19,  # GATEWAY_MESSAGE_CONTENT_LIMITED: the intent is enabled
        "team": None,
        "interactions_endpoint_url": None,
    }


@dataclass(frozen=True)
class Upload:
    """An attachment a fake user sends; `declared_size` lets a test lie about the size."""

    name: str
    data: bytes
    content_type: str | None = None
    declared_size: int | None = None


def attachment_payload(att_id: str, upload: Upload, url: str) -> Json:
    size = upload.declared_size if upload.declared_size is not None else len(upload.data)
    data: Json = {
        "id": att_id,
        "filename": upload.name,
        "size": size,
        "url": url,
        "proxy_url": url,
    }
    if upload.content_type:
        data["content_type"] = upload.content_type
    return data


def message_payload(
    *,
    message_id: str,
    channel: FakeChannel,
    author: FakeUser,
    content: str,
    mentions: list[FakeUser] = (),  # type: ignore[assignment]
    attachments: list[Json] = (),  # type: ignore[assignment]
    referenced: Json | None = None,
    webhook_id: str | None = None,
    flags: int = 0,
    interaction: Json | None = None,
) -> Json:
    data: Json = {
        "id": message_id,
        "channel_id": channel.id,
        "author": author.payload(),
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [dict(u.payload(), member=u.member()) for u in mentions],
        "mention_roles": ROLE_MENTION_RE.findall(content),
        "attachments": list(attachments),
        "embeds": [],
        "pinned": False,
        "type": 19 if referenced is not None else 0,
        "flags": flags,
        "components": [],
    }
    if channel.guild_id is not None:
        data["guild_id"] = channel.guild_id
        data["member"] = author.member()
    if referenced is not None:
        data["message_reference"] = {
            "type": 0,
            "message_id": referenced["id"],
            "channel_id": referenced["channel_id"],
            "guild_id": channel.guild_id,
        }
        data["referenced_message"] = referenced
    if webhook_id is not None:
        data["webhook_id"] = webhook_id
    if interaction is not None:
        data["interaction_metadata"] = interaction
    return data


MENTION_RE = re.compile(r"<@!?(\d+)>")
ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")


def effective_pings(content: str, allowed: Json | None, *, replied_user: str | None) -> list[str]:
    """Who a message would notify, following Discord's allowed_mentions rules.

    With no allowed_mentions object Discord parses everything, @everyone included.
    """
    if allowed is None:
        allowed = {"parse": ["everyone", "users", "roles"], "replied_user": True}
    parse = set(allowed.get("parse") or ())
    users = set(allowed.get("users") or ())
    roles = set(allowed.get("roles") or ())
    pings: list[str] = []
    if "everyone" in parse and ("@everyone" in content or "@here" in content):
        pings.append("@everyone")
    for uid in MENTION_RE.findall(content):
        if "users" in parse or uid in users:
            pings.append(f"user:{uid}")
    for rid in ROLE_MENTION_RE.findall(content):
        if "roles" in parse or rid in roles:
            pings.append(f"role:{rid}")
    if replied_user and allowed.get("replied_user", False):
        pings.append(f"reply:{replied_user}")
    return pings
