"""The platform's waiting indicator ("is thinking…") for one turn.

Setting it is a whole platform round trip (Slack: `assistant.threads.setStatus`), so
it runs alongside the model call rather than before it. The reply's first write and
the clearing wait for it: a status that landed after the reply began would stay
under the finished answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from core.ports import ChatPort
from core.types import ThreadKey

log = logging.getLogger(__name__)


async def best_effort(aw: Awaitable[None]) -> None:
    """For niceties (status indicators, notes): their failure must never fail a turn."""
    try:
        await aw
    except Exception as exc:
        log.debug("best-effort platform call failed: %s", exc)


class StatusIndicator:
    def __init__(self, port: ChatPort, key: ThreadKey) -> None:
        self._port = port
        self._key = key
        self._pending: asyncio.Task[None] | None = None

    def show(self, status: str) -> None:
        """Start setting the status; returns at once."""
        self._pending = asyncio.create_task(
            best_effort(self._port.set_status(self._key, status)), name=f"status:{self._key}"
        )

    async def landed(self) -> None:
        """Wait until the status call (if any) is done; never raises on its failure."""
        if self._pending is not None and not self._pending.done():
            await asyncio.wait([self._pending])

    async def clear(self) -> None:
        await self.landed()
        await best_effort(self._port.set_status(self._key, None))

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
