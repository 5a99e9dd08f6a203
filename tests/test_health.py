"""The operator's health surface: 503 until the bot is connected, then 200; Prometheus text."""

from __future__ import annotations

import aiohttp

from adapters.health import HealthServer


async def test_healthz_turns_200_once_ready_and_metrics_serve_prometheus_text() -> None:
    ready = False
    server = HealthServer(ready=lambda: ready, metrics=lambda: b"threadwise_turns_total 3.0\n")
    await server.start("127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 503
            ready = True
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with http.get(base + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                assert "threadwise_turns_total 3.0" in await resp.text()
    finally:
        await server.stop()
