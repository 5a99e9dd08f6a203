"""Slack markup ↔ Markdown.

Inbound: Slack's control sequences (`<@U1>`, `<url|label>`, `<#C1|name>`, `<!here>`)
and its three HTML entities become plain Markdown the model reads naturally.
Outbound: whatever the model writes must never notify anyone, so mention syntax is
broken with a zero-width space (U+200B) right after the character that starts it.
We send `markdown_text`, which Slack renders as standard Markdown where `&lt;` is not
guaranteed to be decoded; the invisible space keeps the text readable in both
renderers while no longer matching Slack's mention grammar.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

ZWSP = "\u200b"

_TOKEN = re.compile(r"<([^<>\n]+)>")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}

# `<!…>`, `<@…>`, `<#…>` are Slack's mention/broadcast/channel sequences.
_OUT_SEQUENCE = re.compile(r"<(?=[!@#])")
# Plain broadcast words. A text that ends in the middle of one ("@ev") is treated
# as if it were one, so that neutralising a longer text extends the result for its
# prefix: streams only ever append.
_WORDS = ("here", "channel", "everyone")
_PARTIALS = sorted({w[:i] for w in _WORDS for i in range(1, len(w))}, key=len, reverse=True)
_OUT_BROADCAST = re.compile(
    r"(?<!\w)@(?=(?:" + "|".join(_WORDS) + r")|(?:" + "|".join(_PARTIALS) + r")$)",
    re.IGNORECASE,
)

Resolve = Callable[[str], Awaitable[str]]


def decode_entities(text: str) -> str:
    """Slack escapes only these three; decode &amp; last so `&amp;lt;` stays `&lt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


async def _convert_token(inner: str, bot_user_id: str | None, resolve: Resolve) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        user_id = target[1:]
        if bot_user_id and user_id == bot_user_id:
            return ""
        return "@" + await resolve(user_id)
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        command = target[1:]
        if command in _SPECIAL:
            return _SPECIAL[command]
        if command.startswith("subteam^"):
            return label or "@group"
        return label or command  # <!date^…|fallback> and friends
    url = decode_entities(target)
    if label:
        return f"[{decode_entities(label)}]({url})"
    return url.removeprefix("mailto:") if url.startswith("mailto:") else url


async def to_markdown(text: str, *, bot_user_id: str | None, resolve: Resolve) -> str:
    """Convert a Slack message's text to Markdown; the bot's own mention is dropped."""
    out: list[str] = []
    last = 0
    for match in _TOKEN.finditer(text):
        out.append(decode_entities(text[last:match.start()]))
        out.append(await _convert_token(match.group(1), bot_user_id, resolve))
        last = match.end()
    out.append(decode_entities(text[last:]))
    converted = "".join(out)
    # Removing a leading "<@BOT> " leaves stray spaces; tidy only horizontal runs.
    converted = re.sub(r"[ \t]{2,}", " ", converted)
    return converted.strip()


def neutralise(markdown: str) -> str:
    """Make model output unable to ping: `<!channel>`, `<@U1>`, `<#C1>`, `@here`…"""
    text = _OUT_SEQUENCE.sub("<" + ZWSP, markdown)
    return _OUT_BROADCAST.sub("@" + ZWSP, text)


def mentions(text: str, user_id: str) -> bool:
    """Whether a Slack message text mentions this user."""
    return f"<@{user_id}>" in text or f"<@{user_id}|" in text
