"""Fault injection for the Slack emulator: storms of 429s, 5xx answers and dropped
connections on demand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

# A "status" meaning: the connection closes before any answer (a reset, or a proxy
# giving up), which clients see as a transport error rather than an HTTP status.
DROP = 0
# The same, but only after Slack carried the call out: the answer is lost on the way
# back, so a client that sends it again does it twice.
DROP_AFTER = -1


@dataclass
class _Storm:
    methods: frozenset[str] | None  # None: every Web API method
    status: int
    remaining: int
    retry_after: int


@dataclass
class InjectedFaults:
    """Queued storms; the first one matching a call answers it instead of the Web API."""

    storms: list[_Storm] = field(default_factory=list)
    answered: list[tuple[str, int]] = field(default_factory=list)  # (method, status) sent

    def add(self, status: int, count: int, *, methods: Iterable[str] | None = None,
            retry_after: int = 0) -> None:
        chosen = frozenset(methods) if methods is not None else None
        self.storms.append(_Storm(chosen, status, count, retry_after))

    def take(self, method: str, *, performed: bool = False) -> web.Response | int | None:
        """The answer to send instead of the Web API's, DROP to close the connection
        unanswered (the call is not performed), DROP_AFTER to perform it and then close
        the connection unanswered, or None to answer normally. DROP_AFTER storms are
        taken only with performed=True: once the call passed the rate limits and ran."""
        for storm in self.storms:
            if (storm.status == DROP_AFTER) != performed:
                continue
            if storm.remaining > 0 and (storm.methods is None or method in storm.methods):
                storm.remaining -= 1
                self.answered.append((method, storm.status))
                if storm.status in (DROP, DROP_AFTER):
                    return storm.status
                if storm.status == 429:
                    return web.json_response(
                        {"ok": False, "error": "ratelimited"}, status=429,
                        headers={"Retry-After": str(storm.retry_after)},
                    )
                return web.Response(status=storm.status, text="upstream trouble",
                                    content_type="text/plain")
        return None
