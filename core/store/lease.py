"""Token-guarded leases shared by the SQLite and PostgreSQL stores.

A backend supplies three atomic row operations (take, renew, release — each
matching on the holder's random token); this module adds waiting, the `Lease`
handle the core sees, and background renewal while the lease is held.

Fencing, and why there is no separate per-thread sequence number. A turn passes
its lease token to `append()`, which checks that the token still holds the lease
in the same transaction as the insert (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
lease row read FOR SHARE, which a takeover's upsert must wait for). The thread's
lease row is its sequence point: every acquisition writes a fresh random token
into that one row, so "my token is still there" is a compare-and-set on the
thread's current generation, and a stale holder's append fails with StaleLease
exactly as a CAS on a counter would. A counter would add only an *order* between
holders, which nothing compares; we only ever ask "is the writer the current
holder". A lease that expired but was not yet taken over still accepts its
holder's writes: nobody else has written, so nothing is lost or interleaved.

The platform has no such compare-and-set, so a holder must also stop *acting* once
its term may have run out. A process that stalls (a long GC pause, a frozen VM, a
partition) wakes believing it still holds the lease; `confirm()` is asked before
each platform write. It answers from the holder's own clock while at least half the
term is known to be left (the usual case: no database call), and otherwise renews
first, which fails if somebody took the lease over meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

log = logging.getLogger(__name__)

# Waiters poll the shared table (other processes cannot wake us); local
# releases wake them at once through LeaseWaiters.
MIN_POLL_S = 0.02
MAX_POLL_S = 0.1
# A release the database refused (locked, briefly unreachable) is retried this often,
# doubling up to the maximum, until the lease would have expired anyway.
RELEASE_RETRY_S = 0.25
MAX_RELEASE_RETRY_S = 4.0


class LeaseRows(Protocol):
    """The atomic operations a backend performs on its leases table."""

    async def try_acquire_lease(self, name: str, token: str, ttl_s: float) -> bool:
        """Take the lease if it is free or expired; True when `token` now holds it."""
        ...

    async def renew_lease(self, name: str, token: str, ttl_s: float) -> bool:
        """Push the expiry out by ttl_s; False when `token` no longer holds the lease."""
        ...

    async def release_lease(self, name: str, token: str) -> bool:
        """Free the lease only if `token` holds it; True when a row was deleted."""
        ...


class LeaseWaiters:
    """Wakes tasks of this process that wait for a lease when one is released here."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self.generation = 0  # bumped on every local release; waiters compare it
        self._retries: set[asyncio.Task[None]] = set()  # releases the database refused

    def retry(self, task: asyncio.Task[None]) -> None:
        """Hold a background release retry until it ends (the loop keeps only weak refs)."""
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    def close(self) -> None:
        """The store is closing: stop retrying (the rows expire by themselves)."""
        for task in self._retries:
            task.cancel()

    async def wait(self, seen_generation: int, timeout_s: float) -> None:
        async with self._changed:
            if self.generation != seen_generation:
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)

    async def released(self) -> None:
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()


class HeldLease:
    """The `core.ports.Lease` a holder gets: its token, renew(), and whether it was lost."""

    def __init__(
        self, rows: LeaseRows, name: str, token: str, ttl_s: float, *, asked_at: float
    ) -> None:
        self.name = name
        self.token = token
        self.ttl_s = ttl_s
        self._rows = rows
        self._lost = False
        # The term is counted from when we *asked*: the database stamped its expiry
        # no earlier than that, so this end is never later than the real one.
        self._valid_until = asked_at + ttl_s

    @property
    def lost(self) -> bool:
        return self._lost

    async def renew(self) -> None:
        if self._lost:
            return
        asked_at = time.monotonic()
        if await self._rows.renew_lease(self.name, self.token, self.ttl_s):
            self._valid_until = asked_at + self.ttl_s
        elif not self._lost:  # the renewer and confirm() may both have asked
            self._lost = True
            log.warning("lease %s was taken over by another holder", self.name)

    async def confirm(self) -> bool:
        """True while this holder may act; renews first once under half the term is left."""
        if self._lost:
            return False
        if time.monotonic() + self.ttl_s / 2 < self._valid_until:
            return True
        try:
            await self.renew()
        except Exception:  # the database is unreachable: trust the term we know is left
            log.warning("could not confirm lease %s", self.name, exc_info=True)
            return time.monotonic() < self._valid_until
        return not self._lost


@asynccontextmanager
async def hold_lease(
    rows: LeaseRows,
    waiters: LeaseWaiters,
    name: str,
    ttl_s: float,
    *,
    auto_renew: bool = True,
) -> AsyncIterator[HeldLease]:
    """Wait for the lease, hold it (renewing every ttl/3), release it on exit."""
    if ttl_s <= 0:
        raise ValueError("lease ttl_s must be positive")
    token = secrets.token_hex(16)
    delay = MIN_POLL_S
    while True:
        seen = waiters.generation
        asked_at = time.monotonic()
        try:
            acquired = await rows.try_acquire_lease(name, token, ttl_s)
        except asyncio.CancelledError:
            # The take may still land after we stop waiting for it; free it again
            # rather than block the thread for a whole TTL.
            await asyncio.shield(_release(rows, waiters, name, token, ttl_s))
            raise
        if acquired:
            break
        await waiters.wait(seen, delay)
        delay = min(delay * 1.5, MAX_POLL_S)

    lease = HeldLease(rows, name, token, ttl_s, asked_at=asked_at)
    renewer = asyncio.create_task(_keep_renewed(lease)) if auto_renew else None
    try:
        yield lease
    finally:
        if renewer is not None:
            renewer.cancel()
        # Shielded: a cancelled turn must still free its thread for the next one.
        await asyncio.shield(_release(rows, waiters, name, token, ttl_s))
        if renewer is not None:
            await asyncio.wait([renewer])


async def _keep_renewed(lease: HeldLease) -> None:
    """Renew every ttl/3 so a long reply keeps its lease; stops once the lease is lost."""
    while not lease.lost:
        await asyncio.sleep(lease.ttl_s / 3)
        try:
            await lease.renew()
        except Exception:  # a busy database now and then must not end the turn
            log.warning("could not renew lease %s; will retry", lease.name, exc_info=True)


async def _release(
    rows: LeaseRows, waiters: LeaseWaiters, name: str, token: str, ttl_s: float
) -> None:
    try:
        await rows.release_lease(name, token)
    except Exception:  # do not hide the turn's own outcome
        log.warning("could not release lease %s; trying again in the background",
                    name, exc_info=True)
        # Else the thread's next message waits out the whole TTL after a short lock.
        waiters.retry(asyncio.create_task(_release_later(rows, waiters, name, token, ttl_s)))
    finally:
        await waiters.released()


async def _release_later(
    rows: LeaseRows, waiters: LeaseWaiters, name: str, token: str, ttl_s: float
) -> None:
    """Retry a refused release until it lands or the lease would have expired anyway."""
    deadline = time.monotonic() + ttl_s
    delay = RELEASE_RETRY_S
    while time.monotonic() + delay < deadline:
        await asyncio.sleep(delay)
        try:
            await rows.release_lease(name, token)
        except Exception as exc:
            log.debug("release of lease %s refused again: %s", name, exc)
            delay = min(delay * 2, MAX_RELEASE_RETRY_S)
            continue
        log.info("released lease %s on a later try", name)
        await waiters.released()
        return
