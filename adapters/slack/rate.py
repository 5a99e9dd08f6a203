"""Stay inside Slack's per-method rate tiers before a call, instead of eating 429s.

The core's write budget paces replies per workspace (chat.update's Tier 3). Some
methods are tighter than that (chat.startStream/stopStream are Tier 2, chat.postMessage
is about 1 per second per channel), so the adapter keeps one small token bucket per
method and scope. Bursts are kept below what Slack tolerates so that requests passing
this gate never trip Slack's own limiter; the retry handler covers the rest (for
example another process using the same workspace).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Scope = Literal["team", "channel"]


@dataclass(frozen=True, slots=True)
class MethodRate:
    per_minute: float
    burst: int
    scope: Scope = "team"


# Slack's tiers: Tier 2 ≈ 20/min, Tier 3 ≈ 50/min, Tier 4 ≈ 100/min per workspace.
RATES: dict[str, MethodRate] = {
    "chat.postMessage": MethodRate(60, 3, "channel"),
    "chat.update": MethodRate(50, 5),
    "chat.startStream": MethodRate(20, 5),
    "chat.stopStream": MethodRate(20, 5),
    "chat.appendStream": MethodRate(100, 10),
    "users.info": MethodRate(100, 10),
    "files.info": MethodRate(100, 10),
    # Reading for summaries. Tier 3 for internal and Marketplace apps; a commercially
    # distributed app outside the Marketplace gets 1/min (see SLACK_HISTORY_PER_MIN).
    "conversations.replies": MethodRate(40, 3),
    "conversations.history": MethodRate(40, 3),
    "conversations.info": MethodRate(40, 3),
    "conversations.members": MethodRate(80, 5),
    "chat.postEphemeral": MethodRate(80, 5),
    "assistant.threads.setStatus": MethodRate(50, 5),
    "assistant.threads.setSuggestedPrompts": MethodRate(50, 5),
}


@dataclass
class _Bucket:
    rate: float  # per second
    burst: float
    tokens: float
    stamp: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class SlackRateGate:
    """Token buckets keyed by (method, workspace or channel). `speed` scales all rates
    (tests replay a minute of traffic quickly against an emulator scaled alike)."""

    def __init__(self, speed: float = 1.0, overrides: Mapping[str, MethodRate] | None = None
                 ) -> None:
        self.speed = speed
        self.rates = {**RATES, **(overrides or {})}
        self.waited_s = 0.0
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, method: str, team: str, channel: str | None) -> _Bucket | None:
        rate = self.rates.get(method)
        if rate is None:
            return None
        scope = f"{team}:{channel}" if rate.scope == "channel" and channel else team
        bucket = self._buckets.get((method, scope))
        if bucket is None:
            per_s = rate.per_minute / 60.0 * self.speed
            bucket = _Bucket(per_s, float(rate.burst), float(rate.burst), time.monotonic())
            self._buckets[(method, scope)] = bucket
        return bucket

    async def acquire(self, method: str, team: str, channel: str | None = None) -> None:
        """Wait, in FIFO order with other callers of the bucket, for one call."""
        bucket = self._bucket(method, team, channel)
        if bucket is None:
            return
        async with bucket.lock:
            bucket.refill()
            if bucket.tokens < 1.0:
                delay = (1.0 - bucket.tokens) / bucket.rate
                self.waited_s += delay
                await asyncio.sleep(delay)
                bucket.refill()
            bucket.tokens -= 1.0

    def try_acquire(self, method: str, team: str, channel: str | None = None) -> bool:
        """Take a call only if one is free now (for optional calls that may be skipped)."""
        bucket = self._bucket(method, team, channel)
        if bucket is None:
            return True
        if bucket.lock.locked():
            return False
        bucket.refill()
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
