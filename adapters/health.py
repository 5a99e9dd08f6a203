"""The operator's HTTP surface on PORT: GET /healthz (200 once ready, 503 before), GET /metrics.

Shared by every bot; the Slack adapter adds its Events API route on the same server.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


class HealthServer:
    def __init__(self, *, ready: Callable[[], bool], metrics: Callable[[], bytes]) -> None:
        self._ready = ready
        self._metrics_body = metrics
        self._runner: web.AppRunner | None = None
        self.port = 0

    def application(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_text)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        if self._ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "starting"}, status=503)

    async def _metrics_text(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self._metrics_body(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
