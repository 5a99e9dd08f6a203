"""What the Discord emulator remembers: the guild, messages as users see them, and every write."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.discord_payloads import (
    ADMINISTRATOR,
    MEMBER_PERMISSIONS,
    FakeChannel,
    FakeRole,
    FakeUser,
    Json,
    Snowflakes,
)
from tests.fakes.known_secrets import DISCORD_TOKEN

WRITES_PER_WINDOW = 5
WINDOW_S = 5.0
GLOBAL_PER_SECOND = 50  # Discord: requests per second per bot, all routes (not interactions)
MAX_CONTENT = 2000
TOKEN_LIFETIME_S = 15 * 60.0  # an interaction token answers webhook calls for 15 minutes


@dataclass
class Write:
    """One message write the bot attempted (kept whatever the answer was)."""

    at: float
    kind: str  # "post" | "edit" | "original" | "followup" | "followup_edit"
    channel_id: str
    message_id: str | None
    content: str | None
    allowed_mentions: Json | None
    message_reference: Json | None
    status: int
    pings: list[str] = field(default_factory=list)


@dataclass
class RateLimitHit:
    at: float
    bucket: str
    retry_after: float
    via: bool


@dataclass
class CdnRequest:
    at: float
    path: str
    had_authorization: bool


@dataclass
class InteractionRecord:
    id: str
    token: str
    channel_id: str
    created: float
    user: Json = field(default_factory=dict)
    callbacks: list[Json] = field(default_factory=list)
    callback_at: float | None = None
    original_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    ephemeral: bool = False


class FixedWindow:
    """Discord's write bucket: N writes per window that starts at the first write."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.started = 0.0
        self.used = 0

    def take(self, now: float) -> float:
        """0.0 when a write may go now (and counts it), else the seconds to wait."""
        if now >= self.started + self.window_s:
            self.started, self.used = now, 0
        if self.used >= self.limit:
            return self.started + self.window_s - now
        self.used += 1
        return 0.0

    def remaining(self) -> int:
        return self.limit - self.used

    def reset_after(self, now: float) -> float:
        return max(0.0, self.started + self.window_s - now)


class SlidingWindow:
    """Discord's global limit, kept strict: at most `limit` requests in any `window_s`."""

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self.stamps: deque[float] = deque()

    def take(self, now: float) -> float:
        """0.0 when a request may go now (and counts it), else the seconds to wait."""
        while self.stamps and self.stamps[0] <= now - self.window_s:
            self.stamps.popleft()
        if len(self.stamps) >= self.limit:
            return self.stamps[0] + self.window_s - now
        self.stamps.append(now)
        return 0.0


class EmulatorState:
    """The test guild: users, roles, channels, threads, DMs and their messages."""

    def __init__(self) -> None:
        self.ids = Snowflakes()
        self.guild_id = self.ids.next()
        self.bot = FakeUser(self.ids.next(), "threadwise", "threadwise", bot=True)
        self.app_owner = FakeUser(self.ids.next(), "appowner", "App Owner")
        self.token = DISCORD_TOKEN
        self.roles: dict[str, FakeRole] = {}
        self.users: dict[str, FakeUser] = {}  # by username
        self.channels: dict[str, FakeChannel] = {}
        self.messages: dict[str, Json] = {}
        self.writes: list[Write] = []
        self.rate_limits: list[RateLimitHit] = []
        self.buckets: dict[str, FixedWindow] = {}
        self.typing: list[tuple[float, str]] = []
        self.cdn_files: dict[str, tuple[bytes, str]] = {}
        self.cdn_requests: list[CdnRequest] = []
        self.interactions: dict[str, InteractionRecord] = {}
        self.global_commands: list[Json] = []
        self.guild_commands: dict[str, list[Json]] = {}
        self.command_syncs: list[tuple[str, list[Json]]] = []
        self.identify_payloads: list[Json] = []
        self.threads_created: list[str] = []
        self.drop_via_next: int = 0  # fault injection: next N 429s come without `Via`
        # Fault injection: the next posts are created, then their answer is lost: "502"
        # (a proxy error after the fact) or "reset" (the connection drops).
        self.lose_post_answers: list[str] = []
        self.nonces: dict[str, tuple[float, str]] = {}  # enforce_nonce: nonce -> (at, id)
        self.rest_requests: list[tuple[str, str]] = []
        self.history_reads: list[tuple[str, dict[str, str]]] = []  # GET .../messages queries
        self.unreadable: set[str] = set()  # channels the bot may not read (403)
        self.no_history: set[tuple[str, str]] = set()  # (channel, user): no Read History
        self.token_lifetime_s = TOKEN_LIFETIME_S  # interaction tokens (tests shorten it)
        self.writes_per_window = WRITES_PER_WINDOW
        self.window_s = WINDOW_S
        self.global_window = SlidingWindow(GLOBAL_PER_SECOND)

        self.add_role("@everyone", MEMBER_PERMISSIONS, role_id=self.guild_id)
        self.add_role("Admins", ADMINISTRATOR, position=3)
        self.add_role("Members", MEMBER_PERMISSIONS, position=1)
        self.add_role("Muted", MEMBER_PERMISSIONS, position=2)
        # Inviting a bot with permissions makes a role named after it that only it holds.
        self.bot_role = self.add_role(self.bot.name, MEMBER_PERMISSIONS, position=4,
                                      bot_id=self.bot.id)
        self.bot.roles = (self.bot_role.id,)
        self.owner = self.add_user("founder", "Founder")
        for name in ("alice", "bob", "carol", "dave"):
            self.add_user(name, name.capitalize(), roles=("Members",))
        self.add_user("root", "Root", roles=("Admins",))
        self.add_user("otherbot", "OtherBot", bot=True)
        self.users[self.bot.name] = self.bot
        self.add_channel("general")
        self.add_channel("random")

    # --- setup -------------------------------------------------------------
    def add_role(
        self, name: str, permissions: int, *, position: int = 0, role_id: str | None = None,
        bot_id: str | None = None,
    ) -> FakeRole:
        role = FakeRole(role_id or self.ids.next(), name, permissions, position, bot_id)
        self.roles[name] = role
        return role

    def add_user(
        self, name: str, display: str, *, bot: bool = False, roles: tuple[str, ...] = ()
    ) -> FakeUser:
        user = FakeUser(self.ids.next(), name, display, bot, tuple(self.roles[r].id for r in roles))
        self.users[name] = user
        return user

    def add_channel(self, name: str) -> FakeChannel:
        channel = FakeChannel(self.ids.next(), name, 0, self.guild_id)
        self.channels[channel.id] = channel
        return channel

    def channel_named(self, name: str) -> FakeChannel:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise KeyError(name)

    def dm_with(self, user: FakeUser) -> FakeChannel:
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient is user:
                return channel
        channel = FakeChannel(self.ids.next(), f"dm-{user.name}", 1, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def user_by_id(self, user_id: str) -> FakeUser | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def guild_channels(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type == 0]

    def guild_threads(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type == 11]

    def guild_members(self) -> list[FakeUser]:
        return list(self.users.values())

    # --- messages ----------------------------------------------------------
    def store_message(self, payload: Json) -> None:
        self.messages[payload["id"]] = payload
        self.channels[payload["channel_id"]].message_ids.append(payload["id"])

    def channel_messages(self, channel_id: str) -> list[Json]:
        channel = self.channels.get(channel_id)
        return [self.messages[m] for m in channel.message_ids] if channel else []

    def bucket(self, name: str) -> FixedWindow:
        if name not in self.buckets:
            self.buckets[name] = FixedWindow(self.writes_per_window, self.window_s)
        return self.buckets[name]

    @staticmethod
    def now() -> float:
        return time.monotonic()


def content_error(content: Any) -> Json | None:
    """Discord's answer to content it will not store, or None when it is fine."""
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        return {
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {
                "content": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": f"Must be {MAX_CONTENT} or fewer in length.",
                        }
                    ]
                }
            },
        }
    return None
