"""Socket Mode: a websocket that sends envelopes and checks that each one is acked."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web


class SocketModeHub:
    def __init__(self) -> None:
        self.connections: list[web.WebSocketResponse] = []
        self.acks: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/socket", self._socket)]

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections.append(ws)
        await ws.send_json({
            "type": "hello", "num_connections": len(self.connections),
            "debug_info": {"host": "emulator", "approximate_connection_time": 3600},
            "connection_info": {"app_id": "A0THREADWISE"},
        })
        self.connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                self.acks.append(data)
                fut = self._waiting.pop(str(data.get("envelope_id")), None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
        finally:
            self.connections.remove(ws)
            if not self.connections:
                self.connected.clear()
        return ws

    async def deliver(
        self, payload: dict[str, Any], *, timeout_s: float = 3.0, retry_attempt: int = 0,
        connection: int = -1,
    ) -> dict[str, Any]:
        """Send one events_api envelope; return the app's ack (raises if none in time).

        connection picks which open connection gets it (Slack spreads envelopes, and
        their retries, over every connection an app has open); the newest by default.
        """
        await asyncio.wait_for(self.connected.wait(), timeout_s)
        envelope_id = str(uuid.uuid4())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[envelope_id] = fut
        await self.connections[connection].send_json({
            "envelope_id": envelope_id, "type": "events_api", "payload": payload,
            "accepts_response_payload": False, "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        })
        return await asyncio.wait_for(fut, timeout_s)

    async def close(self) -> None:
        for ws in list(self.connections):
            await ws.close()
