"""Replies a dead process left 'streaming': finalise them so they never look alive.
One that showed text is marked interrupted; one that died before its first word gets a
notice under the question, which nothing else would ever answer.

A turn holds its thread's lease from before its reply row exists until after the
reply is final, so whoever holds that lease and still finds a 'streaming' reply
knows it is an orphan (its writer died or was cut off). Two paths reach them:
- the next turn in the thread, under its lease (ConversationService.handle);
- the sweeper, for threads where nobody writes again: at start-up and then
  periodically it takes each candidate thread's lease *without waiting* (a held
  lease means a live turn, which cleans up itself) and finalises what it finds.
Several processes may sweep at once: the lease lets one in per thread, and the
status is re-read under it, so an orphan is finalised once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

from core.ports import ChatPort, Store
from core.splitting import split_all
from core.status import best_effort
from core.types import NewMessage, StoredMessage, ThreadKey
from core.unsaved import UnsavedReplies

log = logging.getLogger(__name__)

INTERRUPTED = "⚠️ _This reply was interrupted (the bot restarted) and is incomplete._"
NOT_ANSWERED = "⚠️ _I restarted before I could answer this. Please ask again._"
# How long the sweeper tries for a thread's lease; longer means a live turn holds it.
TAKE_WAIT_S = 0.3


async def open_turn(
    store: Store, question: NewMessage, lease_token: str
) -> tuple[StoredMessage, StoredMessage]:
    """Store the question and its empty 'streaming' reply row, before anything slow (a
    file download, the model). A process killed from then on leaves a reply row that
    the next start finds and answers with NOT_ANSWERED, so the question is never lost.
    Call only under the thread's lease."""

    async def both() -> tuple[StoredMessage, StoredMessage]:
        user = await store.append(question, lease_token=lease_token)
        reply = await store.append(NewMessage(
            key=question.key, role="assistant", author_id="threadwise",
            author_name="threadwise", text="", parent_id=user.id, status="streaming",
        ), lease_token=lease_token)
        return user, reply

    # A shutdown's cancel must not leave the question without its reply row, nor let
    # the lease go before both rows are in.
    opening = asyncio.ensure_future(both())
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        while not opening.done():  # a second cancel (SIGTERM twice) waits all the same
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([opening])
        if not opening.cancelled() and (exc := opening.exception()) is not None:
            log.warning("could not store the question in %s: %s", question.key, exc)
        raise


async def finalise_orphans(
    store: Store, key: ThreadKey, port: ChatPort, unsaved: UnsavedReplies | None = None
) -> int:
    """Mark this thread's 'streaming' replies interrupted; call only under its lease.
    Those in `unsaved` ended in this process and only get the row they should have."""
    orphans = await store.streaming_messages(key)
    for orphan in orphans:
        if unsaved is not None and orphan.id in unsaved:
            await unsaved.settle(store, orphan.id)
            continue
        log.warning("finalising orphaned reply %s in %s", orphan.id, key)
        if not orphan.platform_id:
            await _tell_unanswered(store, key, port, orphan)
            continue
        limit = port.limits(key).max_chars
        parts = split_all(orphan.text, limit - len(INTERRUPTED) - 4)
        text = parts[0] + "\n\n" if orphan.text.strip() and len(parts) == 1 else ""
        try:
            if len(parts) == 1:
                # finish() on a message this process never opened: the port ends a
                # native stream left open by the dead process, then rewrites it.
                await port.finish(key, orphan.platform_id, text + INTERRUPTED)
            else:
                marker = await port.post(key, INTERRUPTED, reply_to=orphan.platform_id)
                await port.finish(key, marker, INTERRUPTED)
        except Exception as exc:
            log.warning("could not mark orphaned reply in %s: %s", key, exc)
        await store.update(orphan.id, status="partial")
    return len(orphans)


async def _tell_unanswered(
    store: Store, key: ThreadKey, port: ChatPort, orphan: StoredMessage
) -> None:
    """It died before its first write: the question was acknowledged and deduped, so
    nothing would ever answer it. Say so under the question, once: we hold the thread's
    lease and the notice's id goes into the same update that ends 'streaming'."""
    # A waiting indicator ("is thinking…") it set may still be showing.
    await best_effort(port.set_status(key, None))
    question = next((m for m in await store.load_thread(key) if m.id == orphan.parent_id), None)
    notice_id: str | None = None
    try:
        notice_id = await port.post(
            key, NOT_ANSWERED, reply_to=question.platform_id if question else None, final=True
        )
        await port.finish(key, notice_id, NOT_ANSWERED)
    except Exception as exc:
        log.warning("could not tell %s its question went unanswered: %s", key, exc)
    await store.update(orphan.id, status="failed", platform_id=notice_id)


class OrphanSweeper:
    """Finds orphans in threads with no new message; see the module docstring."""

    def __init__(
        self, store: Store, *, lease_name: Callable[[ThreadKey], str], lease_ttl_s: float,
        every_s: float, unsaved: UnsavedReplies | None = None,
    ) -> None:
        self._store = store
        self._unsaved = unsaved
        self._lease_name = lease_name
        self._ttl_s = lease_ttl_s
        self._every_s = every_s

    async def sweep(
        self, port: ChatPort, *, platform: str, owns: Callable[[ThreadKey], bool] | None = None
    ) -> int:
        """One pass over this platform's candidates; returns how many replies it finalised.

        Only replies older than one lease TTL are candidates: a younger one's lease
        may still be held by its dead writer, so trying it now would only wait.
        owns() limits the pass to threads this port can write in (e.g. one workspace).
        """
        candidates = await self._store.orphan_candidates(platform, self._ttl_s)
        keys = dict.fromkeys(m.key for m in candidates if owns is None or owns(m.key))
        finalised = 0
        for key in keys:
            async with AsyncExitStack() as held:
                try:
                    async with asyncio.timeout(TAKE_WAIT_S):
                        await held.enter_async_context(
                            self._store.lease(self._lease_name(key), self._ttl_s)
                        )
                except TimeoutError:
                    continue  # a live turn holds the thread and finalises orphans itself
                finalised += await finalise_orphans(self._store, key, port, self._unsaved)
        return finalised

    async def run(
        self, port: ChatPort, *, platform: str, owns: Callable[[ThreadKey], bool] | None = None
    ) -> None:
        """Sweep now and then every `every_s` until cancelled (every_s <= 0: never)."""
        if self._every_s <= 0:
            return
        while True:
            try:
                finalised = await self.sweep(port, platform=platform, owns=owns)
                if finalised:
                    log.info("orphan sweep finalised %d %s repl(ies)", finalised, platform)
            except Exception:  # a database blip must not end the sweeper
                log.warning("orphan sweep failed; retrying later", exc_info=True)
            await asyncio.sleep(self._every_s)
