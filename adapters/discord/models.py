"""Per-channel model choice for /model, and channel-level /reset markers.

Both are kept in the store through the core (ConversationService.remember), so a
restart or a redeploy keeps them. Each process loads them once at start-up; that is
enough because a channel lives on one shard, and the shard that changes a choice
is the one that reads it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from core.channel_overrides import ChannelOverrides

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices
MODEL_PREFIX = "discord:model:"
RESET_PREFIX = "discord:reset:"


class Keeper(Protocol):
    """Small named choices that outlive the process (ConversationService provides it)."""

    async def remember(self, name: str, value: str | None) -> None: ...

    async def remembered(self, prefix: str) -> dict[str, str]: ...


class ModelChoices:
    """Which model each channel uses: its /model choice (a thread's, then its parent
    channel's), else the channel's THREADWISE_CONFIG model, else MODEL_NAME."""

    def __init__(
        self, default: str, offered: tuple[str, ...], keeper: Keeper,
        overrides: ChannelOverrides | None = None,
    ) -> None:
        self.default = default
        self._overrides = overrides or ChannelOverrides()
        # A channel's configured model is offered too, so /model can switch back to it.
        self._offered = list(dict.fromkeys((default, *offered, *self._overrides.models("discord"))))
        self._keeper = keeper
        self._by_channel: dict[str, str] = {}

    async def load(self) -> None:
        for name, model in (await self._keeper.remembered(MODEL_PREFIX)).items():
            channel = name.removeprefix(MODEL_PREFIX)
            if model in self._offered:
                self._by_channel[channel] = model
            else:  # DISCORD_MODELS changed since: say so rather than silently switch
                log.warning("channel %s chose %s, which is no longer configured; using %s",
                            channel, model, self.effective((channel,)))

    @property
    def offered(self) -> list[str]:
        return list(self._offered)

    def matching(self, typed: str) -> list[str]:
        typed = typed.strip().lower()
        found = [m for m in self._offered if typed in m.lower()]
        return found[:MAX_CHOICES]

    async def choose(self, places: tuple[str, ...], model: str) -> None:
        """Choose for places[0] (a thread's parent stays as it is). Saved first: a choice
        that could not be kept is not applied either."""
        if model not in self._offered:
            raise ValueError(f"{model} is not one of the configured models")
        channel = places[0]
        # Choosing what would apply anyway is no choice: the place follows later changes.
        chosen = None if model == self._inherited(places) else model
        await self._keeper.remember(MODEL_PREFIX + channel, chosen)
        if chosen is None:
            self._by_channel.pop(channel, None)
        else:
            self._by_channel[channel] = chosen

    def effective(self, places: tuple[str, ...]) -> str:
        """The model answering in the first of `places` (a thread, then its parent)."""
        chosen = next((self._by_channel[p] for p in places if p in self._by_channel), None)
        return chosen or self._configured(places)

    def _inherited(self, places: tuple[str, ...]) -> str:
        chosen = next((self._by_channel[p] for p in places[1:] if p in self._by_channel), None)
        return chosen or self._configured(places)

    def _configured(self, places: tuple[str, ...]) -> str:
        return self._overrides.discord_places(places).model or self.default


class ChannelResets:
    """/reset in a plain channel: reply chains that began before it are not continued.

    Conversation roots are snowflakes (message or interaction ids), which grow with time, so
    comparing a chain's root with the /reset interaction's id says which came first. One
    mark per channel that ever used /reset, so the map stays small.
    """

    def __init__(self, keeper: Keeper) -> None:
        self._keeper = keeper
        self._marks: dict[str, int] = {}

    async def load(self) -> None:
        for name, mark in (await self._keeper.remembered(RESET_PREFIX)).items():
            if mark.isdigit():
                self._marks[name.removeprefix(RESET_PREFIX)] = int(mark)

    async def mark(self, channel_id: str, snowflake: int) -> None:
        await self._keeper.remember(RESET_PREFIX + channel_id, str(snowflake))
        self._marks[channel_id] = snowflake

    def is_stale(self, channel_id: str, root: str) -> bool:
        mark = self._marks.get(channel_id)
        return mark is not None and root.isdigit() and int(root) < mark
