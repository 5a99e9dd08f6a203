"""Discord message links: jump URLs for citations, and links people paste.

`https://discord.com/channels/{guild}/{channel}/{message}` (ptb./canary. and the old
discordapp.com host too; `@me` instead of a guild id for DMs). A link without the
message part points at the channel or thread itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

HOSTS = {"discord.com", "ptb.discord.com", "canary.discord.com", "discordapp.com",
         "www.discord.com", "ptb.discordapp.com", "canary.discordapp.com"}
_PATH = re.compile(r"^/channels/(\d{1,20}|@me)/(\d{1,20})(?:/(\d{1,20}))?/?$")


@dataclass(frozen=True, slots=True)
class DiscordLink:
    guild: str | None  # None for DMs (@me)
    channel: str  # a channel or a thread
    message: str | None


def jump_url(guild: str | None, channel: str, message: str) -> str:
    return f"https://discord.com/channels/{guild or '@me'}/{channel}/{message}"


def parse_discord_link(text: str) -> DiscordLink | None:
    text = text.strip().removeprefix("<").removesuffix(">")
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in HOSTS:
        return None
    m = _PATH.match(parts.path)
    if m is None:
        return None
    guild = None if m.group(1) == "@me" else m.group(1)
    return DiscordLink(guild, m.group(2), m.group(3))
