"""The Slack adapter's own Prometheus metrics, registered on the app's registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler


class SlackMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "threadwise_slack_deliveries", "Events API deliveries by HTTP status and retry",
            ["status", "retry"], registry=registry,
        )
        self.events = Counter(
            "threadwise_slack_events", "Slack events by type and what we did with them",
            ["type", "action"], registry=registry,
        )
        self.rate_limited = Counter(
            "threadwise_slack_rate_limited", "Slack Web API answers of HTTP 429 (retried)",
            registry=registry,
        )
        self.turns_in_flight = Gauge(
            "threadwise_slack_turns_in_flight", "Slack turns being answered now",
            registry=registry,
        )

    def track_in_flight(self, count: Callable[[], int]) -> None:
        self.turns_in_flight.set_function(lambda: float(count()))

    def retry_handlers(self) -> list[AsyncRetryHandler]:
        return [CountingRateLimitRetryHandler(self.rate_limited, max_retry_count=3)]


class CountingRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """Honour Retry-After like the stock handler, and count each 429."""

    def __init__(self, counter: Counter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counter = counter

    async def prepare_for_next_attempt_async(self, **kwargs: Any) -> None:
        self._counter.inc()
        await super().prepare_for_next_attempt_async(**kwargs)
