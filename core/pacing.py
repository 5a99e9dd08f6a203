"""Shared write budgets: one token bucket per platform budget (a workspace, a channel).

Every reply that writes to the same bucket queues on one FIFO lock, so concurrent
replies take turns fairly and the bucket's rate is never exceeded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.ports import WriteLimits

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WriteBudgets:
    """Token buckets keyed by WriteLimits.bucket, shared by every streamer of a service."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self.waited_s = 0.0  # total time writers spent waiting for budget (for metrics)

    def _bucket(self, limits: WriteLimits) -> _Bucket:
        bucket = self._buckets.get(limits.bucket)
        if bucket is None:
            burst = float(max(1, limits.bucket_burst))
            bucket = _Bucket(limits.bucket_rate, burst, burst, self._clock())
            self._buckets[limits.bucket] = bucket
        return bucket

    def _refill(self, bucket: _Bucket) -> None:
        now = self._clock()
        bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
        bucket.stamp = now

    async def acquire(self, limits: WriteLimits) -> None:
        """Wait (in FIFO order with other writers of the bucket) for one write."""
        bucket = self._bucket(limits)
        async with bucket.lock:
            self._refill(bucket)
            if bucket.tokens < 1.0:
                delay = (1.0 - bucket.tokens) / bucket.rate
                self.waited_s += delay
                await self._sleep(delay)
                self._refill(bucket)
            bucket.tokens -= 1.0
