"""The HTTP surface on PORT: POST /slack/events (HTTP mode), GET /healthz, GET /metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from adapters.health import HealthServer
from adapters.slack.metrics import SlackMetrics

log = logging.getLogger(__name__)


class HttpSurface(HealthServer):
    """The health surface plus, in HTTP mode, POST /slack/events."""

    def __init__(
        self, *, events: bool, registry: CollectorRegistry, metrics: SlackMetrics,
        ready: Callable[[], bool], signing_secret: str | None = None,
    ) -> None:
        super().__init__(ready=ready, metrics=lambda: generate_latest(registry))
        self._events_enabled = events
        self.bolt: AsyncApp | None = None  # attached once the token is verified
        self._metrics = metrics
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None

    def application(self) -> web.Application:
        app = super().application()
        if self._events_enabled:
            app.router.add_post("/slack/events", self._events)
        return app

    async def _events(self, request: web.Request) -> web.StreamResponse:
        retry = "yes" if request.headers.get("X-Slack-Retry-Num") else "no"
        if self.bolt is None:  # still starting: Slack retries later
            self._metrics.deliveries.labels("503", retry).inc()
            return web.json_response({"error": "starting"}, status=503)
        # Bolt verifies the signature (401 when wrong or stale), acks, and runs our
        # listeners, which only schedule work, so the answer is immediate.
        try:
            response = await self.bolt.async_dispatch(await to_bolt_request(request))
        except Exception as exc:  # Bolt cannot parse it (not UTF-8, not JSON, not an object)
            status = 400 if await self._signed(request) else 401
            log.warning("rejected a Slack delivery Bolt could not read (%s, %d bytes): %d",
                        type(exc).__name__, request.content_length or 0, status)
            self._metrics.deliveries.labels(str(status), retry).inc()
            return web.json_response({"error": "malformed request"}, status=status)
        self._metrics.deliveries.labels(str(response.status), retry).inc()
        if response.status == 401:
            log.warning("rejected a Slack delivery with an invalid or stale signature")
        return await to_aiohttp_response(response)

    async def _signed(self, request: web.Request) -> bool:
        """Whether the body carries a valid signature (for bodies Bolt could not parse)."""
        if self._verifier is None:
            return False
        try:
            return self._verifier.is_valid(
                await request.read(), request.headers.get("X-Slack-Request-Timestamp"),
                request.headers.get("X-Slack-Signature"),
            )
        except ValueError:  # not UTF-8: Slack never sends that
            return False
