"""Community controls: who may use the bot where, how often, and how many tokens a day."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import discord

from adapters.discord.settings import DiscordSettings
from core.channel_overrides import ChannelOverrides
from core.settings import Settings
from core.types import Usage

RATE_WINDOW_S = 60.0
MAX_TRACKED_USERS = 10_000

RefusalKind = Literal["rate", "quota"]
UsageLookup = Callable[[float, str], Awaitable[Usage]]  # (since, user_id) -> usage


@dataclass(frozen=True, slots=True)
class Requester:
    """One person asking in one place, reduced to what the rules look at."""

    user_id: str
    role_ids: frozenset[str]
    role_names: frozenset[str]
    places: tuple[str, ...]  # the channel, and for a thread its parent channel
    is_dm: bool
    is_admin: bool


def is_admin(user: discord.abc.User, admin_users: tuple[str, ...]) -> bool:
    if str(user.id) in admin_users:
        return True
    if isinstance(user, discord.Member):
        perms = user.guild_permissions
        return perms.administrator or perms.manage_guild
    return False


def requester_of(
    user: discord.abc.User, channel: object, settings: DiscordSettings
) -> Requester:
    places = [str(getattr(channel, "id", ""))]
    parent_id = getattr(channel, "parent_id", None)
    if parent_id is not None:
        places.append(str(parent_id))
    roles = getattr(user, "roles", []) if isinstance(user, discord.Member) else []
    return Requester(
        user_id=str(user.id),
        role_ids=frozenset(str(r.id) for r in roles),
        role_names=frozenset(r.name.lower() for r in roles),
        places=tuple(places),
        is_dm=isinstance(channel, discord.DMChannel) or getattr(channel, "guild", None) is None,
        is_admin=is_admin(user, settings.admin_users),
    )


def start_of_utc_day(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class CommunityPolicy:
    def __init__(
        self,
        settings: Settings,
        discord_settings: DiscordSettings,
        overrides: ChannelOverrides,
        usage: UsageLookup,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._allowed_channels = set(settings.discord_allowed_channels)
        self._allowed_roles = {r.lower() for r in settings.discord_allowed_roles}
        self._settings = discord_settings
        self._overrides = overrides
        self._blocked_roles = {r.lower() for r in discord_settings.blocked_roles}
        self._usage = usage
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._warned: dict[tuple[str, RefusalKind], float] = {}

    def admitted(self, who: Requester) -> bool:
        """Allow- and block-lists. Refusals are silent: the bot simply is not there."""
        s = self._settings
        if who.user_id in s.blocked_users:
            return False
        if who.is_dm:
            return s.allow_dms and (not self._allowed_roles or who.is_admin)
        if any(place in s.blocked_channels for place in who.places):
            return False
        if self._allowed_channels and not any(p in self._allowed_channels for p in who.places):
            return False
        roles = who.role_ids | who.role_names
        if roles & self._blocked_roles:
            return False
        here = self._overrides.discord_places(who.places)
        if who.is_admin:
            return True
        if here.allowed_users is not None and who.user_id not in here.allowed_users:
            return False
        allowed_roles = self._allowed_roles
        if here.allowed_roles is not None:
            allowed_roles = {r.lower() for r in here.allowed_roles}
        return not allowed_roles or bool(roles & allowed_roles)

    def take_request(self, who: Requester) -> str | None:
        """Count one request; a friendly refusal when the user is over the per-minute rate."""
        limit = self._settings.user_rate_per_min
        if who.is_admin or limit <= 0:
            return None
        now = self._clock()
        recent = self._recent.setdefault(who.user_id, deque())
        while recent and recent[0] <= now - RATE_WINDOW_S:
            recent.popleft()
        if len(recent) < limit:
            recent.append(now)
            self._forget_idle(now)
            return None
        wait = math.ceil(recent[0] + RATE_WINDOW_S - now)
        return (
            f"⏳ You're asking faster than I can keep up ({limit} requests a minute). "
            f"Try again in {wait} s."
        )

    def should_warn(self, who: Requester, kind: RefusalKind) -> bool:
        """Show a refusal once per window, not on every extra message. Each kind has its
        own window: a rate warning does not hide that the daily quota ran out too."""
        now = self._clock()
        if now - self._warned.get((who.user_id, kind), -math.inf) < RATE_WINDOW_S:
            return False
        self._warned[(who.user_id, kind)] = now
        return True

    def quota(self, who: Requester) -> int:
        """Tokens a user may spend a day when asking here (0 = no quota); usage counts
        everywhere, so a channel with a smaller quota is closed to a heavy user first."""
        here = self._overrides.discord_places(who.places).daily_token_quota
        return self._settings.daily_token_quota if here is None else here

    async def over_quota(self, who: Requester) -> str | None:
        """A friendly refusal when the user spent today's token quota."""
        quota = self.quota(who)
        if who.is_admin or quota <= 0:
            return None
        now = self._clock()
        since = start_of_utc_day(now)
        used = (await self._usage(since, who.user_id)).total
        if used < quota:
            return None
        left = timedelta(seconds=int(since + 86_400 - now))
        hours, minutes = left.seconds // 3600, (left.seconds % 3600) // 60
        return (
            f"🙏 You've used your {quota:,} tokens for today ({used:,} so far). "
            f"The quota resets at 00:00 UTC, in {hours} h {minutes} min."
        )

    def _forget_idle(self, now: float) -> None:
        if len(self._recent) <= MAX_TRACKED_USERS:
            return
        for user, stamps in list(self._recent.items()):
            if not stamps or stamps[-1] <= now - RATE_WINDOW_S:
                del self._recent[user]
                for kind in get_args(RefusalKind):
                    self._warned.pop((user, kind), None)
