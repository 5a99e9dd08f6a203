"""The HTTP surface on PORT: POST /slack/events (HTTP mode), GET /healthz, GET /metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp

from adapters.slack.metrics import SlackMetrics

log = logging.getLogger(__name__)


class HttpSurface:
    def __init__(
        self, *, events: bool, registry: CollectorRegistry, metrics: SlackMetrics,
        ready: Callable[[], bool],
    ) -> None:
        self._events_enabled = events
        self.bolt: AsyncApp | None = None  # attached once the token is verified
        self._registry = registry
        self._metrics = metrics
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port = 0

    def application(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        if self._events_enabled:
            app.router.add_post("/slack/events", self._events)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_text)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _events(self, request: web.Request) -> web.StreamResponse:
        retry = "yes" if request.headers.get("X-Slack-Retry-Num") else "no"
        if self.bolt is None:  # still starting: Slack retries later
            self._metrics.deliveries.labels("503", retry).inc()
            return web.json_response({"error": "starting"}, status=503)
        # Bolt verifies the signature (401 when wrong or stale), acks, and runs our
        # listeners, which only schedule work, so the answer is immediate.
        response = await self.bolt.async_dispatch(await to_bolt_request(request))
        self._metrics.deliveries.labels(str(response.status), retry).inc()
        if response.status == 401:
            log.warning("rejected a Slack delivery with an invalid or stale signature")
        return await to_aiohttp_response(response)

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        if self._ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)

    async def _metrics_text(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
