"""Private file hosting as Slack does it, plus a foreign host that must never see the token.

Slack serves `url_private_download` only with `Authorization: Bearer <bot token>` and
the files:read scope; otherwise it answers HTTP 200 with an HTML sign-in page.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

from aiohttp import web

LOGIN_PAGE = (
    "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Slack</title></head>"
    "<body><h1>Sign in to your workspace</h1></body></html>"
)


@dataclass(frozen=True, slots=True)
class FileRequest:
    host: str
    path: str
    authorization: str | None


@dataclass
class HostedFile:
    id: str
    name: str
    data: bytes
    mimetype: str
    stall_s: float = 0.0  # a slow file host: the download waits this long to start


@dataclass
class FileHost:
    """File routes of the emulator; `requests` records every download attempt."""

    bot_token: str
    scopes: list[str]
    files: dict[str, HostedFile] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[FileRequest] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Set at shutdown, so a stalled download does not hold the server's cleanup.
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/files/{file_id}/{name}", self._serve),
            web.get("/redirect/{rid}", self._redirect),
        ]

    def add(self, name: str, data: bytes, mimetype: str, stall_s: float = 0.0) -> HostedFile:
        hosted = HostedFile(f"F{next(self._ids):08d}", name, data, mimetype, stall_s)
        self.files[hosted.id] = hosted
        return hosted

    def add_redirect(self, target: str) -> str:
        rid = f"R{next(self._ids):06d}"
        self.redirects[rid] = target
        return f"/redirect/{rid}"

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            FileRequest(request.host, request.path, request.headers.get("Authorization"))
        )

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        hosted = self.files.get(request.match_info["file_id"])
        authorised = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        if not authorised or "files:read" not in self.scopes:
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if hosted is None:
            return web.Response(status=404, text="file not found")
        if hosted.stall_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), hosted.stall_s)
        return web.Response(body=hosted.data, content_type=hosted.mimetype)

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        target = self.redirects.get(request.match_info["rid"])
        if target is None:
            return web.Response(status=404)
        raise web.HTTPFound(target)


class ForeignHost:
    """A second server on another loopback address: whatever reaches it is recorded."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self.requests: list[FileRequest] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{self.host}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def authorizations(self) -> list[str]:
        return [r.authorization for r in self.requests if r.authorization]

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            FileRequest(request.host, request.path, request.headers.get("Authorization"))
        )
        return web.Response(body=b"\x89PNG foreign bytes", content_type="image/png")
