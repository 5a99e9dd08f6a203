"""ReplyRecord: keeps a reply's stored row in step with what the platform shows.

Every save carries the thread's lease token, so it lands only while this turn still
holds the thread (core/store/lease.py): a process that stalled and lost the thread
can never overwrite the reply the new holder marked interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass

from core.ports import HistoryStore, Lease, StaleLease
from core.store.errors import StoreUnavailable
from core.types import MessageStatus, ToolExchange

log = logging.getLogger(__name__)

# The streamed text is saved at most this often (a store write per edit made the single
# SQLite connection the bottleneck under load); new message ids are saved at once.
PROGRESS_SAVE_S = 3.0
SAVE_ATTEMPTS = 3  # a finished reply is saved again after 0.5 s and 1 s if the store is busy
# How long a turn cancelled by a shutdown may spend saving what it showed.
SHUTDOWN_SAVE_S = 2.0


@dataclass(frozen=True, slots=True)
class FinalState:
    """What a finished reply's row says: kept for a later try when the database refuses
    it (core/unsaved.py)."""

    status: MessageStatus
    text: str | None = None
    platform_ids: tuple[str, ...] = ()
    tools: tuple[ToolExchange, ...] = ()

    async def write(
        self, store: HistoryStore, reply_id: int, *, lease_token: str | None = None,
        stored_parts: Collection[str] = (),
    ) -> None:
        # The continuation parts first: a row no longer 'streaming' counts as final, so
        # a refusal in between must leave it 'streaming', to be tried again.
        for extra in self.platform_ids[1:]:
            if extra not in stored_parts:
                await store.add_platform_id(reply_id, extra)
        await store.update(
            reply_id, status=self.status, text=self.text,
            platform_id=self.platform_ids[0] if self.platform_ids else None,
            tools=self.tools or None, lease_token=lease_token,
        )


class ReplyRecord:
    def __init__(self, store: HistoryStore, reply_id: int, lease: Lease) -> None:
        self._store = store
        self._id = reply_id
        self._lease = lease
        self._saved_ids: set[str] = set()
        self._saved_at = 0.0

    async def progress(self, ids: list[str], text: str) -> None:
        """After each platform write, so a restarted process can finalise this reply
        if we die mid-stream. A refusal marks the lease lost: the next write is refused."""
        try:
            if ids and ids[0] not in self._saved_ids:
                self._saved_ids.add(ids[0])
                await self._update(platform_id=ids[0], text=text)
                self._saved_at = time.monotonic()
            await self._add_parts(ids)
            if time.monotonic() - self._saved_at >= PROGRESS_SAVE_S:
                self._saved_at = time.monotonic()
                await self._update(text=text)
        except StaleLease:
            await self._lease.renew()

    async def keep_shown(self, ids: list[str], text: str) -> None:
        """The turn is being cancelled (a graceful shutdown): save all the reply shows,
        since the last progress save may be seconds old and whoever marks the reply
        interrupted rewrites it from the stored text. Shielded from the cancellation,
        bounded in time, and fenced by the lease like every save. Never raises."""
        if not ids:
            return  # nothing visible yet: nothing to keep
        save = asyncio.ensure_future(self._keep(ids, text))
        try:
            await asyncio.wait_for(asyncio.shield(save), SHUTDOWN_SAVE_S)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("could not save the interrupted reply %s in time", self._id)

    async def _keep(self, ids: list[str], text: str) -> None:
        try:
            await self._update(platform_id=ids[0], text=text)
            await self._add_parts(ids)
        except Exception as exc:  # StaleLease: the thread's new holder finalises it
            log.warning("could not save the interrupted reply %s: %r", self._id, exc)

    async def save(self, final: FinalState) -> None:
        """Persist the finished reply; a busy database gets a few more chances.
        Raises StaleLease if the thread was taken over meanwhile."""
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                await final.write(self._store, self._id, lease_token=self._lease.token,
                                  stored_parts=self._saved_ids)
                self._saved_ids.update(final.platform_ids[1:])
                return
            except StoreUnavailable as exc:
                if attempt == SAVE_ATTEMPTS:
                    raise
                log.warning("saving a reply failed (attempt %d): %s", attempt, exc.reason)
                await asyncio.sleep(0.5 * attempt)

    async def _update(
        self, *, text: str | None = None, status: MessageStatus | None = None,
        platform_id: str | None = None, tools: tuple[ToolExchange, ...] | None = None,
    ) -> None:
        await self._store.update(
            self._id, text=text, status=status, platform_id=platform_id, tools=tools,
            lease_token=self._lease.token,
        )

    async def _add_parts(self, ids: list[str]) -> None:
        """Continuation messages (a reply split over several platform messages)."""
        for extra in ids[1:]:
            if extra not in self._saved_ids:
                await self._store.add_platform_id(self._id, extra)
                self._saved_ids.add(extra)  # only once stored: a refusal is tried again
