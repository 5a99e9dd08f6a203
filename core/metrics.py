"""Prometheus metrics, one registry per running app (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from core.types import ThreadKey, Usage


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.turns = Counter(
            "threadwise_turns", "Conversation turns by outcome", ["platform", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "threadwise_tokens", "Model tokens by channel and kind",
            ["platform", "channel", "kind"], registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "threadwise_turn_seconds", "Wall time of a turn, event to final write",
            buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160), registry=self.registry,
        )
        self.platform_writes = Counter(
            "threadwise_platform_writes", "Platform writes by kind", ["platform", "kind"],
            registry=self.registry,
        )

    def observe_usage(self, key: ThreadKey, usage: Usage) -> None:
        for kind, value in (
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
            ("cached", usage.cached_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if value:
                self.tokens.labels(key.platform, key.channel, kind).inc(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
