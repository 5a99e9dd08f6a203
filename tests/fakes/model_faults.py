"""Model endpoints that fail below HTTP: a provider that cannot be connected to, or one
that accepts the request and never answers. Point MODEL_BASE_URL at `base_url`.

The fake model server (tests/fakes/model_server.py) covers everything that happens
once HTTP is spoken (status codes, Retry-After, slow and broken streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Literal

Mode = Literal["no-accept", "silent"]


class UnresponsiveModel:
    """`no-accept`: a listener whose accept queue is full, so the kernel drops new SYNs
    and a client's connect times out (a real connect timeout on loopback).
    `silent`: connections are accepted and the request read, but nothing is ever sent.
    """

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.connections = 0  # accepted (silent mode)
        self.port = 0
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self._server: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/"

    async def start(self) -> UnresponsiveModel:
        if self.mode == "silent":
            self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
            self.port = int(self._server.sockets[0].getsockname()[1])
            return self
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accept(); two queued connections fill it up
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)
        await asyncio.sleep(0.05)  # let the handshakes complete and the queue fill
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._held.add(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass  # read and ignore; answer nothing
        self._held.discard(writer)
        writer.close()

    async def stop(self) -> None:
        for writer in list(self._held):
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        for sock in [*self._fillers, *([self._listener] if self._listener else [])]:
            sock.close()

    async def __aenter__(self) -> UnresponsiveModel:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
