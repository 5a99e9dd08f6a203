"""A Slack emulator on 127.0.0.1 for the real slack_sdk / slack-bolt clients.

The Web API lives under `api_url` (point AsyncWebClient's base_url there). It records
every call, keeps what each channel and thread shows, enforces Slack's limits and
rate tiers, hosts private files, opens Socket Mode websockets, and sends signed
Events API deliveries to the app under test. Fixture: `slack_server`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from tests.fakes.known_secrets import SLACK_SIGNING_SECRET
from tests.fakes.slack_api import ApiError, SlackUser, SlackWebApi, WorkspaceConfig
from tests.fakes.slack_events import (
    Delivery,
    event_callback,
    message_action,
    sign_and_post,
    sign_and_post_form,
    slash_command_form,
    user_message,
)
from tests.fakes.slack_faults import DROP, DROP_AFTER, InjectedFaults
from tests.fakes.slack_files import FileHost, ForeignHost
from tests.fakes.slack_rate import RateLimiter
from tests.fakes.slack_socket import SocketModeHub
from tests.fakes.slack_state import ChannelInfo, Ephemeral, Message, WorkspaceState, pings_in

SIGNING_SECRET = SLACK_SIGNING_SECRET


@dataclass(frozen=True, slots=True)
class RecordedCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int
    error: str | None


@dataclass
class Post:
    """A person's post as the emulator stored it, and the deliveries Slack would send."""

    channel: str
    ts: str
    thread_ts: str | None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.thread_ts or self.ts


class SlackServer:
    def __init__(self, *, stream_expiry_s: float = 300.0, rate_speed: float = 1.0) -> None:
        self.cfg = WorkspaceConfig(stream_expiry_s=stream_expiry_s)
        self.state = WorkspaceState()
        self.api = SlackWebApi(self.cfg, self.state)
        self.limiter = RateLimiter(rate_speed)
        self.faults = InjectedFaults()  # tests queue 429s, 5xx answers and drops here
        self.files = FileHost(self.cfg.bot_token, self.cfg.scopes)
        self.socket = SocketModeHub()
        self.foreign = ForeignHost()
        self.signing_secret = SIGNING_SECRET
        self.calls: list[RecordedCall] = []
        self.rate_limited_count = 0
        self.responses: dict[str, list[dict[str, Any]]] = {}  # response_url id -> bodies
        self._response_ids = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{rid}", self._response_url)
        app.add_routes(self.files.routes())
        app.add_routes(self.socket.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        self.api.socket_url = lambda: f"ws://127.0.0.1:{port}/socket?ticket=emulated"
        await self.foreign.start()

    async def close(self) -> None:
        self.files.closing.set()
        await self.socket.close()
        await self.foreign.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @property
    def file_host(self) -> str:
        """The host:port to list in SLACK_FILE_HOSTS."""
        return self.base_url.removeprefix("http://")

    def set_rate_speed(self, speed: float) -> None:
        self.limiter = RateLimiter(speed)

    # -- the Web API --------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method in self.cfg.delays:
            await asyncio.sleep(self.cfg.delays[method])
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                params.update(json.loads(raw or b"{}"))
            elif request.content_type == "application/x-www-form-urlencoded":
                params.update(parse_qsl(raw.decode()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        channel = params.get("channel") or params.get("channel_id")
        injected = self.faults.take(method)
        if injected == DROP:  # the connection resets before Slack answers
            self._record(method, params, request, DROP, "dropped")
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=503)  # never reaches the client
        if isinstance(injected, web.Response):  # a test asked for a 429 storm or a 5xx
            self._record(method, params, request, injected.status, "injected")
            return injected
        retry_after = self.limiter.check(method, self.cfg.team_id, channel)
        headers = {"x-oauth-scopes": ",".join(self.cfg.scopes)}
        if retry_after is not None:
            self.rate_limited_count += 1
            self._record(method, params, request, 429, "ratelimited")
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429,
                headers={**headers, "Retry-After": str(retry_after)},
            )
        lost = self.faults.take(method, performed=True) == DROP_AFTER
        status = DROP_AFTER if lost else 200
        try:
            answer = {"ok": True, **self.api.call(method, token, params)}
            self._record(method, params, request, status, None)
        except ApiError as exc:
            answer = {"ok": False, "error": exc.error}
            self._record(method, params, request, status, exc.error)
        if lost:  # carried out, but the answer never arrives
            assert request.transport is not None
            request.transport.abort()
        return web.json_response(answer, headers=headers)

    def _record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int,
        error: str | None,
    ) -> None:
        self.calls.append(RecordedCall(
            method, params, dict(request.headers), time.monotonic(), status, error
        ))

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    # -- people and their posts ---------------------------------------------------------

    def add_user(self, user_id: str, display_name: str, real_name: str = "") -> None:
        self.api.users[user_id] = SlackUser(
            user_id, display_name.lower().replace(" ", "."), display_name, real_name
        )

    def user_post(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None, channel_type: str = "channel",
        at: float | None = None, broadcast: bool = False,
    ) -> Post:
        """Store a person's post and build the deliveries Slack would send for it.

        `at` back-dates the post (its ts) to that unix time; `broadcast` is a thread
        reply with "Also send to channel" ticked.
        """
        msg = self.state.add(Message(
            channel=channel, ts=self.state.next_ts(at), thread_ts=thread_ts, user=user,
            text=text, files=list(files or []), broadcast=broadcast and thread_ts is not None,
        ))
        post = Post(channel, msg.ts, thread_ts)
        common: dict[str, Any] = {
            "team": self.cfg.team_id, "channel": channel, "user": user, "text": text,
            "ts": msg.ts, "thread_ts": thread_ts, "files": files,
        }
        post.events.append(self._wrap(user_message(
            **common, channel_type=channel_type, broadcast=msg.broadcast)))
        if f"<@{self.cfg.bot_user_id}>" in text and channel_type != "im":
            post.events.append(self._wrap(user_message(**common, event_type="app_mention")))
        return post

    def _wrap(self, event: dict[str, Any]) -> dict[str, Any]:
        return event_callback(event, team_id=self.cfg.team_id, bot_user_id=self.cfg.bot_user_id)

    def wrap_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return self._wrap(event)

    @property
    def mention(self) -> str:
        return f"<@{self.cfg.bot_user_id}>"

    async def deliver(
        self, app_url: str, payload: dict[str, Any], *, retry_num: int | None = None,
        tamper: bool = False, age_s: float = 0,
    ) -> Delivery:
        return await sign_and_post(
            app_url, payload, secret=self.signing_secret, retry_num=retry_num,
            tamper=tamper, age_s=age_s,
        )

    # -- channels, commands and shortcuts -----------------------------------------------

    def add_channel(
        self, channel: str, name: str, *, private: bool = False, bot_member: bool = True,
        members: set[str] | None = None,
    ) -> None:
        self.state.channel_infos[channel] = ChannelInfo(channel, name, private, bot_member,
                                                        members)

    def _new_response_url(self) -> str:
        self._response_ids += 1
        rid = f"R{self._response_ids:04d}"
        self.responses[rid] = []
        return f"{self.base_url}/response/{rid}"

    async def _response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        if rid not in self.responses:
            return web.Response(status=404, text="no_such_response_url")
        self.responses[rid].append(await request.json())
        return web.Response(text="ok")

    async def slash_command(
        self, app_url: str, *, channel: str, user: str, text: str = "",
        command: str = "/summarize", thread_ts: str | None = None,
    ) -> tuple[Delivery, str]:
        """A person runs a slash command; returns the delivery and its response_url id."""
        url = self._new_response_url()
        fields = slash_command_form(
            command=command, text=text, team_id=self.cfg.team_id, channel=channel, user=user,
            response_url=url, thread_ts=thread_ts,
        )
        delivery = await sign_and_post_form(app_url, fields, secret=self.signing_secret)
        return delivery, url.rsplit("/", 1)[1]

    async def message_shortcut(
        self, app_url: str, *, callback_id: str, channel: str, ts: str, user: str,
    ) -> tuple[Delivery, str]:
        """A person picks a message shortcut on the message (channel, ts)."""
        msg = self.state.get(channel, ts)
        assert msg is not None, f"no message {ts} in {channel}"
        url = self._new_response_url()
        payload = message_action(
            callback_id=callback_id, team_id=self.cfg.team_id, channel=channel, user=user,
            message=msg.as_api(), response_url=url,
        )
        delivery = await sign_and_post_form(
            app_url, {"payload": json.dumps(payload)}, secret=self.signing_secret
        )
        return delivery, url.rsplit("/", 1)[1]

    def ephemerals_for(self, user: str) -> list[Ephemeral]:
        return [e for e in self.state.ephemerals if e.user == user]

    def permalink(self, channel: str, ts: str, thread_ts: str | None = None) -> str:
        """Slack's permalink form for a message of this workspace."""
        link = f"https://threadwise-test.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return link

    # -- files ----------------------------------------------------------------------------

    def _file_object(self, file_id: str, name: str, mimetype: str, size: int, url: str) -> dict[
        str, Any
    ]:
        return {
            "id": file_id, "name": name, "title": name, "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1], "size": size, "mode": "hosted",
            "url_private": url, "url_private_download": url,
        }

    def host_file(
        self, name: str, data: bytes, mimetype: str, *, stall_s: float = 0.0
    ) -> dict[str, Any]:
        hosted = self.files.add(name, data, mimetype, stall_s)
        url = f"{self.base_url}/files/{hosted.id}/{name}"
        obj = self._file_object(hosted.id, name, mimetype, len(data), url)
        self.api.file_objects[hosted.id] = obj
        return obj

    def connect_file(self, name: str, data: bytes, mimetype: str, *,
                     visible: bool = True) -> dict[str, Any]:
        """A file shared from another organisation over Slack Connect, as events carry
        it: only an id, to be looked up with files.info (which answers file_not_found
        when the file is not `visible` to the app)."""
        file_id = str(self.host_file(name, data, mimetype)["id"])
        if not visible:
            del self.api.file_objects[file_id]
        return {"id": file_id, "mode": "file_access", "file_access": "check_file_info",
                "created": 0, "timestamp": 0, "user": ""}

    def redirected_file(self, name: str, target: str, mimetype: str = "image/png") -> dict[
        str, Any
    ]:
        """A file whose private URL answers 302 to `target`."""
        path = self.files.add_redirect(target)
        return self._file_object(f"FR{len(self.files.redirects)}", name, mimetype, 100,
                                 self.base_url + path)

    def foreign_file(self, name: str, mimetype: str = "image/png") -> dict[str, Any]:
        url = f"{self.foreign.base_url}/files/{name}"
        return self._file_object("FFOREIGN", name, mimetype, 100, url)

    # -- what users see -----------------------------------------------------------------

    def thread_messages(self, channel: str, thread_ts: str) -> list[Message]:
        return self.state.thread(channel, thread_ts)

    def bot_replies(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.state.thread(channel, thread_ts) if m.bot_id]

    def bot_text(self, channel: str, thread_ts: str) -> str:
        return "".join(m.text for m in self.bot_replies(channel, thread_ts))

    def pings(self, channel: str, thread_ts: str) -> list[str]:
        return [p for m in self.bot_replies(channel, thread_ts) for p in pings_in(m.text)]

    def status(self, channel: str, thread_ts: str) -> str:
        return self.state.status(channel, thread_ts)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached within the timeout")
            await asyncio.sleep(0.02)


@pytest.fixture
async def slack_server() -> AsyncIterator[SlackServer]:
    server = SlackServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
