"""One budget for all of the bot's Discord REST requests, under Discord's global limit.

Discord allows a bot 50 requests a second over all routes together (interaction responses
excepted); past that every request gets a global 429, and 429s count toward Discord's ban
of an IP after 10,000 invalid requests in 10 minutes. Each channel paces its own writes
(one a second, see port.py), and discord.py slows down only *after* a global 429, so
fifty channels streaming at once would run into it. So every request discord.py's HTTP
client makes (writes, typing, history reads) first takes its turn here, in call order,
evenly spaced: at most rate + 1 requests in any second.

This waits inside the port's write, after the core read the text to show; the core
cannot count this budget itself yet (WriteLimits names one bucket per write).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp
from discord.http import Route

# Of Discord's 50 a second: room for timing jitter and Discord counting a little early.
GLOBAL_RATE = 45.0


class RequestBudget:
    """Hands out request slots 1/rate seconds apart, first come first served."""

    def __init__(self, rate: float = GLOBAL_RATE, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._next = 0.0  # the earliest moment the next slot may go
        self.waited_s = 0.0

    async def take(self) -> None:
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate  # reserved before waiting: order is kept
        if slot > now:
            self.waited_s += slot - now
            await asyncio.sleep(slot - now)


def budget_trace(budget: RequestBudget) -> aiohttp.TraceConfig:
    """An aiohttp trace (discord.py's documented `http_trace` option) that makes every
    REST request wait for the budget before it is sent. Interaction callbacks and
    webhooks are outside the global limit (and a callback has 3 s), so they go at once;
    so do the gateway and CDN downloads, which are not REST requests."""

    async def on_request_start(
        session: aiohttp.ClientSession, context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        url = str(params.url)
        if url.startswith(Route.BASE) and not _EXEMPT.search(url[len(Route.BASE):]):
            await budget.take()

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return trace


_EXEMPT = re.compile(r"^/(interactions|webhooks)/")
