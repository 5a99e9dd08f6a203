"""Slack's Web API rate tiers as the emulator enforces them.

Numbers follow Slack's published tiers (per method, per workspace, per minute):
Tier 2 ≈ 20+, Tier 3 ≈ 50+, Tier 4 ≈ 100+, and chat.postMessage's special limit of
about one message per second per channel. Slack tolerates short bursts; a token
bucket with a modest capacity models that. `speed` scales every rate so a test can
replay a minute of traffic in a second without changing the ratios between methods.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

Scope = Literal["team", "channel"]


@dataclass(frozen=True, slots=True)
class RateRule:
    per_minute: float
    burst: int
    scope: Scope = "team"


TIER2 = RateRule(20, 10)
TIER3 = RateRule(50, 20)
TIER4 = RateRule(100, 30)

METHOD_RULES: dict[str, RateRule] = {
    "chat.postMessage": RateRule(60, 6, "channel"),
    "chat.update": TIER3,
    "chat.startStream": TIER2,
    "chat.stopStream": TIER2,
    "chat.appendStream": TIER4,
    "users.info": TIER4,
    "files.info": TIER4,
    "assistant.threads.setStatus": TIER3,
    "assistant.threads.setSuggestedPrompts": TIER3,
    "conversations.replies": TIER3,
    "conversations.history": TIER3,
    "conversations.info": TIER3,
    "conversations.members": TIER4,
    "chat.postEphemeral": TIER4,
    "auth.test": RateRule(600, 50),
    "apps.connections.open": RateRule(1, 5),
}


class _Bucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float | None:
        """Take one call; None when allowed, else the seconds until one is."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per (method, workspace) or (method, channel)."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check(self, method: str, team: str, channel: str | None) -> int | None:
        """None when the call may proceed, else Retry-After in whole seconds (≥ 1)."""
        rule = METHOD_RULES.get(method)
        if rule is None:
            return None
        scope = channel if rule.scope == "channel" and channel else team
        bucket = self._buckets.get((method, scope))
        if bucket is None:
            bucket = _Bucket(rule.per_minute / 60.0 * self.speed, rule.burst)
            self._buckets[(method, scope)] = bucket
        wait = bucket.take()
        return None if wait is None else max(1, math.ceil(wait))
