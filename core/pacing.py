"""Shared write budgets: one token bucket per platform budget (a workspace, a channel).

Every reply that writes to the same bucket queues on one FIFO lock, so concurrent
replies take turns fairly and the bucket's rate is never exceeded.

A bucket also admits only as many *live* replies (shown and still growing) as its rate
can refresh every LIVE_REFRESH_S. More would all look frozen mid-sentence, each waiting
a minute for its next edit when fifty share Slack's chat.update tier. A reply beyond
that waits behind its typing/status indicator and is posted when a slot frees, or
whole once it is complete (one write instead of a post and many edits).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.ports import WriteLimits

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A live reply should change at least this often while the model is still writing.
LIVE_REFRESH_S = 3.0


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    live: set[object] = field(default_factory=set)
    waiting: deque[tuple[object, asyncio.Future[None]]] = field(default_factory=deque)

    @property
    def live_slots(self) -> int:
        return max(1, int(self.rate * LIVE_REFRESH_S + 1e-9))


class WriteBudgets:
    """Token buckets keyed by WriteLimits.bucket, shared by every streamer of a service."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self.waited_s = 0.0  # total time writers spent waiting for budget (for metrics)

    def _bucket(self, limits: WriteLimits) -> _Bucket:
        return self._named(limits.bucket, limits.bucket_rate, limits.bucket_burst)

    def _named(self, name: str, rate: float, burst: int) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            size = float(max(1, burst))
            bucket = _Bucket(rate, size, size, self._clock())
            self._buckets[name] = bucket
        return bucket

    def _refill(self, bucket: _Bucket) -> None:
        now = self._clock()
        bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
        bucket.stamp = now

    async def acquire(self, limits: WriteLimits) -> None:
        """Wait (in FIFO order with other writers of the bucket) for one write."""
        await self._take(self._bucket(limits))

    async def acquire_post(self, limits: WriteLimits) -> None:
        """Wait for one post from the limits' own post budget."""
        assert limits.post_bucket is not None, "posts share the edit bucket: use acquire()"
        await self._take(self._named(limits.post_bucket, limits.post_rate, limits.post_burst))

    async def _take(self, bucket: _Bucket) -> None:
        async with bucket.lock:
            self._refill(bucket)
            if bucket.tokens < 1.0:
                delay = (1.0 - bucket.tokens) / bucket.rate
                self.waited_s += delay
                await self._sleep(delay)
                self._refill(bucket)
            bucket.tokens -= 1.0

    # -- live slots -------------------------------------------------------------------

    async def admit(self, limits: WriteLimits, owner: object, until: asyncio.Event) -> bool:
        """Wait (FIFO) for a live slot in the bucket; False if `until` fires first."""
        bucket = self._bucket(limits)
        if len(bucket.live) < bucket.live_slots and not bucket.waiting:
            bucket.live.add(owner)
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bucket.waiting.append((owner, turn))
        gave_up = asyncio.ensure_future(_fired(until))
        try:
            await asyncio.wait({turn, gave_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gave_up.cancel()
            if not turn.done():
                turn.cancel()
                bucket.waiting.remove((owner, turn))
        return not turn.cancelled()

    def hold(self, limits: WriteLimits, owner: object) -> None:
        """Count `owner` as live in this bucket (it moved here already shown)."""
        self._bucket(limits).live.add(owner)

    def release(self, bucket_name: str, owner: object) -> None:
        """`owner` is no longer live in the bucket: hand its slot to the next waiter."""
        bucket = self._buckets.get(bucket_name)
        if bucket is None:
            return
        bucket.live.discard(owner)
        while bucket.waiting and len(bucket.live) < bucket.live_slots:
            waiter, turn = bucket.waiting.popleft()
            if not turn.done():
                bucket.live.add(waiter)
                turn.set_result(None)


async def _fired(event: asyncio.Event) -> None:
    await event.wait()
