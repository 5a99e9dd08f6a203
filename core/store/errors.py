"""Errors a store raises when the database itself is the problem, phrased for people."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

USER_REASON = "the bot's database is unavailable right now; please try again later"


class StoreUnavailable(Exception):
    """The database cannot be opened or written.

    `reason` is for operators (logs, start-up errors): it names the file or host and
    what to do. `user_reason` is what people in a chat thread see: plain words, with
    no server paths or host names. Messages never contain a password: URLs are passed
    through `mask_url` first.
    """

    def __init__(self, reason: str, *, user_reason: str = USER_REASON) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user_reason = user_reason


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by a newer threadwise than this one."""


def mask_url(url: str) -> str:
    """'postgresql://bob:s3cret@db/x' -> 'postgresql://bob:***@db/x' (for logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    netloc, query = parts.netloc, parts.query
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    if "password" in query.lower():  # libpq and asyncpg also accept ?password=...
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if k.lower() == "password" else v) for k, v in pairs]
        query = urlencode(masked, safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
