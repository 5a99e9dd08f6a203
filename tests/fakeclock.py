"""Virtual time for pacing tests: sleepers wake in deadline order, instantly.

Time advances only when every task is waiting, so concurrent sleepers see one
consistent clock (unlike a sleep that just adds to a counter).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), fut))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive())
        await fut

    async def _drive(self) -> None:
        while self._sleepers:
            for _ in range(20):  # let every runnable task run until it blocks
                await asyncio.sleep(0)
            if not self._sleepers:
                return
            deadline, _, fut = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            if not fut.done():
                fut.set_result(None)
