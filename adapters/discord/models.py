"""Per-channel model choice for /model, and channel-level /reset markers."""

from __future__ import annotations

from adapters.discord.port import Remembered

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices


class ModelChoices:
    """Which model each channel uses; kept in memory (a restart returns to the default)."""

    def __init__(self, default: str, offered: tuple[str, ...]) -> None:
        self.default = default
        self._offered = list(dict.fromkeys((default, *offered)))
        self._by_channel: dict[str, str] = {}

    @property
    def offered(self) -> list[str]:
        return list(self._offered)

    def matching(self, typed: str) -> list[str]:
        typed = typed.strip().lower()
        found = [m for m in self._offered if typed in m.lower()]
        return found[:MAX_CHOICES]

    def choose(self, channel_id: str, model: str) -> None:
        if model not in self._offered:
            raise ValueError(f"{model} is not one of the configured models")
        if model == self.default:
            self._by_channel.pop(channel_id, None)
        else:
            self._by_channel[channel_id] = model

    def current(self, channel_id: str) -> str:
        return self._by_channel.get(channel_id, self.default)


class ChannelResets:
    """/reset in a plain channel: reply chains that began before it are not continued.

    Conversation roots are snowflakes (message or interaction ids), which grow with time, so
    comparing a chain's root with the /reset interaction's id says which came first.
    """

    def __init__(self) -> None:
        self._marks: Remembered[int] = Remembered(4096)

    def mark(self, channel_id: str, snowflake: int) -> None:
        self._marks.remember(channel_id, snowflake)

    def is_stale(self, channel_id: str, root: str) -> bool:
        mark = self._marks.get(channel_id)
        return mark is not None and root.isdigit() and int(root) < mark
