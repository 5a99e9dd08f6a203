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
import time
from collections.abc import Callable
from typing import Any

from discord.http import HTTPClient, Route

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


def pace_requests(http: HTTPClient, budget: RequestBudget) -> None:
    """Make every request of this discord.py client wait for the budget first.

    discord.py builds every REST call through HTTPClient.request; the interaction
    callbacks and webhooks bypass it, and they are outside the global limit anyway.
    """
    unpaced = http.request

    async def request(route: Route, **kwargs: Any) -> Any:
        await budget.take()
        return await unpaced(route, **kwargs)

    http.request = request  # type: ignore[method-assign]
