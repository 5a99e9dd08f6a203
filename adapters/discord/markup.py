"""Discord message markup → the plain Markdown the model reads."""

from __future__ import annotations

import re
from collections.abc import Mapping

import discord

TOKEN_RE = re.compile(r"<(@!?|@&|#)(\d+)>|<a?:(\w+):\d+>")
QUOTE_LIMIT = 1500


def speaker_name(user: discord.abc.User) -> str:
    """What people see as the author: server nickname, else display name, else username."""
    return user.display_name or user.name


def bot_role_id(message: discord.Message) -> int | None:
    """The role Discord made for the bot in this server (named after it), if any."""
    role = message.guild.self_role if message.guild is not None else None
    return role.id if role is not None else None


def mentions_bot(message: discord.Message, bot_id: int) -> bool:
    """@bot, or @ the bot's own role: Discord's autocomplete offers both under its name."""
    if re.search(rf"<@!?{bot_id}>", message.content):
        return True
    role = bot_role_id(message)
    return role is not None and f"<@&{role}>" in message.content


def readable_text(message: discord.Message, bot_id: int) -> str:
    """Content with mentions as @names (the bot's own mention removed) and emoji as :name:."""
    users: dict[int, str] = {u.id: speaker_name(u) for u in message.mentions}
    roles: dict[int, str] = {r.id: r.name for r in message.role_mentions}
    channels: dict[int, str] = {
        c.id: getattr(c, "name", str(c.id)) for c in message.channel_mentions
    }
    return convert(message.content, bot_id=bot_id, users=users, roles=roles, channels=channels,
                   bot_role=bot_role_id(message))


def convert(
    content: str,
    *,
    bot_id: int,
    users: Mapping[int, str],
    roles: Mapping[int, str] | None = None,
    channels: Mapping[int, str] | None = None,
    bot_role: int | None = None,
) -> str:
    def swap(match: re.Match[str]) -> str:
        kind, raw_id, emoji = match.group(1), match.group(2), match.group(3)
        if emoji is not None:
            return f":{emoji}:"
        ident = int(raw_id)
        if kind in ("@", "@!"):
            if ident == bot_id:
                return ""
            return f"@{users.get(ident, 'unknown-user')}"
        if kind == "@&":
            if ident == bot_role:
                return ""
            return f"@{(roles or {}).get(ident, 'unknown-role')}"
        return f"#{(channels or {}).get(ident, 'unknown-channel')}"

    text = TOKEN_RE.sub(swap, content)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def quoted(author: str, text: str) -> str:
    """A message the user replied to, as Markdown quote lines the model can attribute."""
    if len(text) > QUOTE_LIMIT:
        text = text[:QUOTE_LIMIT] + "…"
    lines = text.splitlines() or [""]
    return f"> {author}: {lines[0]}\n" + "".join(f"> {line}\n" for line in lines[1:])
