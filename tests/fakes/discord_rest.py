"""The emulator's REST API and CDN, answering unmodified discord.py the way Discord does."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.discord_payloads import (
    FakeChannel,
    Json,
    application_payload,
    effective_pings,
    iso_now,
    message_payload,
)
from tests.fakes.discord_state import (
    CdnRequest,
    EmulatorState,
    InteractionRecord,
    RateLimitHit,
    Write,
    content_error,
)

Dispatch = Callable[[str, Json], Awaitable[None]]
INTERACTION_DEADLINE_S = 3.0
EPHEMERAL = 1 << 6
LOADING = 1 << 7


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Content-Type exactly `application/json` (discord.py compares the header)."""
    if status == 204:
        return web.Response(status=204, headers=headers)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def error(status: int, code: int, message: str) -> web.Response:
    return reply({"code": code, "message": message}, status)


class Rest:
    def __init__(self, state: EmulatorState, dispatch: Dispatch) -> None:
        self.state = state
        self.dispatch = dispatch

    def routes(self, prefix: str) -> list[web.RouteDef]:
        p = prefix
        return [
            web.get(f"{p}/users/@me", self.me),
            web.get(f"{p}/oauth2/applications/@me", self.application),
            web.get(f"{p}/gateway", self.gateway_info),
            web.get(f"{p}/gateway/bot", self.gateway_info),
            web.get(f"{p}/channels/{{cid}}", self.get_channel),
            web.get(f"{p}/channels/{{cid}}/messages/{{mid}}", self.get_message),
            web.get(f"{p}/channels/{{cid}}/messages", self.list_messages),
            web.post(f"{p}/channels/{{cid}}/messages", self.create_message),
            web.patch(f"{p}/channels/{{cid}}/messages/{{mid}}", self.edit_message),
            web.post(f"{p}/channels/{{cid}}/typing", self.typing),
            web.post(f"{p}/channels/{{cid}}/messages/{{mid}}/threads", self.start_thread),
            web.put(f"{p}/applications/{{app}}/commands", self.put_commands),
            web.get(f"{p}/applications/{{app}}/commands", self.get_commands),
            web.put(f"{p}/applications/{{app}}/guilds/{{gid}}/commands", self.put_commands),
            web.get(f"{p}/applications/{{app}}/guilds/{{gid}}/commands", self.get_commands),
            web.post(f"{p}/interactions/{{iid}}/{{token}}/callback", self.callback),
            web.get(f"{p}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self.webhook_get),
            web.patch(f"{p}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self.webhook_edit),
            web.post(f"{p}/webhooks/{{app}}/{{token}}", self.followup),
        ]

    # --- plumbing ------------------------------------------------------------
    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.state.rest_requests.append((request.method, request.path))
        public = "/interactions/" in request.path or "/webhooks/" in request.path
        authorized = request.headers.get("Authorization") == f"Bot {self.state.token}"
        if request.path.startswith("/api/") and not public and not authorized:
            return error(401, 0, "401: Unauthorized")
        if request.body_exists and request.content_type != "application/json":
            return error(400, 50109, "The request body contains invalid JSON.")
        return await handler(request)

    def _channel(self, request: web.Request) -> FakeChannel | None:
        return self.state.channels.get(request.match_info["cid"])

    def _take(self, bucket: str) -> web.Response | dict[str, str]:
        """Charge one write to a bucket: its rate-limit headers, or the 429 to send."""
        now = self.state.now()
        window = self.state.bucket(bucket)
        wait = window.take(now)
        reset_after = window.reset_after(now)
        headers = {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining()),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": f"hash-{bucket.split(':')[0]}",
        }
        if not wait:
            return headers
        via = self.state.drop_via_next <= 0
        self.state.drop_via_next -= 0 if via else 1
        self.state.rate_limits.append(RateLimitHit(time.time(), bucket, wait, via))
        headers.update({"Retry-After": f"{wait:.3f}", "X-RateLimit-Scope": "user"})
        if via:
            headers["Via"] = "1.1 google"
        body = {"message": "You are being rate limited.", "retry_after": round(wait, 3),
                "global": False}
        return reply(body, 429, headers)

    def _record(self, kind: str, channel_id: str, body: Json, status: int,
                message_id: str | None = None, replied_user: str | None = None) -> Write:
        content = body.get("content")
        allowed = body.get("allowed_mentions")
        pings = effective_pings(content or "", allowed, replied_user=replied_user)
        write = Write(time.time(), kind, channel_id, message_id, content, allowed,
                      body.get("message_reference"), status, pings)
        self.state.writes.append(write)
        return write

    # --- identity ------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        return reply(dict(self.state.bot.payload(), verified=True, mfa_enabled=False))

    async def application(self, request: web.Request) -> web.Response:
        return reply(application_payload(self.state.bot.id, self.state.app_owner))

    async def gateway_info(self, request: web.Request) -> web.Response:
        url = f"ws://{request.host}/gateway"
        return reply({"url": url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})

    # --- channels and messages -------------------------------------------------
    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel is None:
            return error(404, 10003, "Unknown Channel")
        return reply(channel.payload())

    async def get_message(self, request: web.Request) -> web.Response:
        message = self.state.messages.get(request.match_info["mid"])
        if message is None or message["channel_id"] != request.match_info["cid"]:
            return error(404, 10008, "Unknown Message")
        return reply(message)

    async def list_messages(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages: Discord's paging (newest first in every case)."""
        channel = self._channel(request)
        if channel is None:
            return error(404, 10003, "Unknown Channel")
        if channel.id in self.state.unreadable:
            return error(403, 50001, "Missing Access")
        q = request.query
        if sum(k in q for k in ("before", "after", "around")) > 1:
            return error(400, 50035, "Invalid Form Body")
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            return error(400, 50035, "Invalid Form Body")
        if not 1 <= limit <= 100:
            return error(400, 50035, "Invalid Form Body")
        visible = [m for m in self.state.channel_messages(channel.id)
                   if not int(m.get("flags", 0)) & EPHEMERAL]
        visible.sort(key=lambda m: int(m["id"]))
        if "after" in q:
            page = [m for m in visible if int(m["id"]) > int(q["after"])][:limit]
        elif "before" in q:
            page = [m for m in visible if int(m["id"]) < int(q["before"])][-limit:]
        elif "around" in q:
            pivot = int(q["around"])
            older = [m for m in visible if int(m["id"]) < pivot][-(limit // 2):]
            newer = [m for m in visible if int(m["id"]) >= pivot][: limit - len(older)]
            page = older + newer
        else:
            page = visible[-limit:]
        self.state.history_reads.append((channel.id, dict(q)))
        return reply(list(reversed(page)))

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel is None:
            return error(404, 10003, "Unknown Channel")
        body = await request.json()
        limited = self._take(f"channel:{channel.id}")
        if isinstance(limited, web.Response):
            self._record("post", channel.id, body, 429)
            return limited
        bad = content_error(body.get("content"))
        if bad is not None:
            self._record("post", channel.id, body, 400)
            return reply(bad, 400, limited)
        if not body.get("content"):
            self._record("post", channel.id, body, 400)
            return reply({"code": 50006, "message": "Cannot send an empty message"}, 400, limited)
        referenced = None
        ref = body.get("message_reference")
        if ref:
            referenced = self.state.messages.get(str(ref.get("message_id")))
            if referenced is None and ref.get("fail_if_not_exists", True):
                self._record("post", channel.id, body, 400)
                return error(400, 50035, "Invalid Form Body: Unknown message")
        message = message_payload(
            message_id=self.state.ids.next(), channel=channel, author=self.state.bot,
            content=body["content"], referenced=referenced,
        )
        self.state.store_message(message)
        replied = referenced["author"]["id"] if referenced else None
        self._record("post", channel.id, body, 200, message["id"], replied)
        await self.dispatch("MESSAGE_CREATE", message)
        return reply(message, 200, limited)

    async def edit_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self.state.messages.get(request.match_info["mid"])
        if channel is None or message is None or message["channel_id"] != channel.id:
            return error(404, 10008, "Unknown Message")
        if message["author"]["id"] != self.state.bot.id:
            return error(403, 50005, "Cannot edit a message authored by another user")
        body = await request.json()
        limited = self._take(f"channel:{channel.id}")
        if isinstance(limited, web.Response):
            self._record("edit", channel.id, body, 429, message["id"])
            return limited
        bad = content_error(body.get("content"))
        if bad is not None:
            self._record("edit", channel.id, body, 400, message["id"])
            return reply(bad, 400, limited)
        self._record("edit", channel.id, body, 200, message["id"])
        self._apply_edit(message, body)
        await self.dispatch("MESSAGE_UPDATE", message)
        return reply(message, 200, limited)

    @staticmethod
    def _apply_edit(message: Json, body: Json) -> None:
        if "content" in body:
            message["content"] = body["content"] or ""
        message["edited_timestamp"] = iso_now()
        message["flags"] = message.get("flags", 0) & ~LOADING

    async def typing(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel is None:
            return error(404, 10003, "Unknown Channel")
        self.state.typing.append((time.time(), channel.id))
        return reply(None, 204)

    async def start_thread(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self.state.messages.get(request.match_info["mid"])
        if channel is None or message is None or channel.type != 0:
            return error(404, 10008, "Unknown Message")
        if message["id"] in self.state.channels:
            return error(400, 160004, "A thread has already been created for this message")
        body = await request.json()
        thread = FakeChannel(
            message["id"], str(body.get("name") or "thread")[:100], 11, channel.guild_id,
            parent_id=channel.id, owner_id=self.state.bot.id,
        )
        self.state.channels[thread.id] = thread
        self.state.threads_created.append(thread.id)
        message["thread"] = thread.payload()
        payload = dict(thread.payload(), newly_created=True)
        payload["member"] = {"id": thread.id, "user_id": self.state.bot.id,
                             "join_timestamp": iso_now(), "flags": 0}
        await self.dispatch("THREAD_CREATE", payload)
        return reply(thread.payload(), 201)

    # --- application commands -----------------------------------------------------
    async def put_commands(self, request: web.Request) -> web.Response:
        body = await request.json()
        gid = request.match_info.get("gid")
        stored = []
        for command in body:
            stored.append({
                "id": self.state.ids.next(),
                "application_id": self.state.bot.id,
                "version": self.state.ids.next(),
                "type": command.get("type", 1),
                "name": command["name"],
                "description": command.get("description", ""),
                "options": command.get("options", []),
                "default_member_permissions": command.get("default_member_permissions"),
                "dm_permission": command.get("dm_permission", True),
                "nsfw": command.get("nsfw", False),
                **({"guild_id": gid} if gid else {}),
            })
        if gid:
            self.state.guild_commands[gid] = stored
        else:
            self.state.global_commands = stored
        self.state.command_syncs.append((gid or "global", stored))
        return reply(stored)

    async def get_commands(self, request: web.Request) -> web.Response:
        gid = request.match_info.get("gid")
        return reply(self.state.guild_commands.get(gid, []) if gid else self.state.global_commands)

    # --- interactions ----------------------------------------------------------------
    def _interaction(self, token: str) -> InteractionRecord | None:
        return next((i for i in self.state.interactions.values() if i.token == token), None)

    async def callback(self, request: web.Request) -> web.Response:
        record = self.state.interactions.get(request.match_info["iid"])
        if record is None or record.token != request.match_info["token"]:
            return error(404, 10062, "Unknown interaction")
        if time.monotonic() - record.created > INTERACTION_DEADLINE_S:
            return error(404, 10062, "Unknown interaction")
        if record.callbacks:
            return error(400, 40060, "Interaction has already been acknowledged.")
        body = await request.json()
        record.callbacks.append(body)
        record.callback_at = time.monotonic()
        kind = int(body["type"])
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        result: Json = {"interaction": {"id": record.id, "type": 2}}
        if kind in (4, 5):
            channel = self.state.channels[record.channel_id]
            bad = content_error(data.get("content"))
            if bad is not None:
                return reply(bad, 400)
            message = message_payload(
                message_id=self.state.ids.next(), channel=channel, author=self.state.bot,
                content=data.get("content", "") if kind == 4 else "",
                webhook_id=self.state.bot.id, flags=flags | (LOADING if kind == 5 else 0),
                interaction={"id": record.id, "type": 2, "user": record.user,
                             "authorizing_integration_owners": {}},
            )
            record.original_id = message["id"]
            record.ephemeral = bool(flags & EPHEMERAL)
            self.state.store_message(message)
            if kind == 4:
                self._record("original", channel.id, data, 200, message["id"])
            if not record.ephemeral:
                await self.dispatch("MESSAGE_CREATE", message)
            result["interaction"].update(
                response_message_id=message["id"],
                response_message_loading=kind == 5,
                response_message_ephemeral=record.ephemeral,
            )
            result["resource"] = {"type": kind, "message": message}
        if "with_response" not in request.query:
            return reply(None, 204)
        return reply(result)

    async def webhook_get(self, request: web.Request) -> web.Response:
        record = self._interaction(request.match_info["token"])
        mid = request.match_info["mid"]
        if record is not None and mid == "@original":
            mid = record.original_id or ""
        message = self.state.messages.get(mid)
        if record is None or message is None:
            return error(404, 10008, "Unknown Message")
        return reply(message)

    async def webhook_edit(self, request: web.Request) -> web.Response:
        record = self._interaction(request.match_info["token"])
        mid = request.match_info["mid"]
        kind = "original" if mid == "@original" else "followup_edit"
        if record is not None and mid == "@original":
            mid = record.original_id or ""
        message = self.state.messages.get(mid)
        if record is None or message is None:
            return error(404, 10008, "Unknown Message")
        body = await request.json()
        limited = self._take(f"webhook:{record.token}")
        if isinstance(limited, web.Response):
            self._record(kind, record.channel_id, body, 429, message["id"])
            return limited
        bad = content_error(body.get("content"))
        if bad is not None:
            self._record(kind, record.channel_id, body, 400, message["id"])
            return reply(bad, 400, limited)
        self._record(kind, record.channel_id, body, 200, message["id"])
        self._apply_edit(message, body)
        if not record.ephemeral:
            await self.dispatch("MESSAGE_UPDATE", message)
        return reply(message, 200, limited)

    async def followup(self, request: web.Request) -> web.Response:
        record = self._interaction(request.match_info["token"])
        if record is None or not record.callbacks:
            return error(404, 10015, "Unknown Webhook")
        body = await request.json()
        limited = self._take(f"webhook:{record.token}")
        if isinstance(limited, web.Response):
            self._record("followup", record.channel_id, body, 429)
            return limited
        bad = content_error(body.get("content"))
        if bad is not None:
            self._record("followup", record.channel_id, body, 400)
            return reply(bad, 400, limited)
        channel = self.state.channels[record.channel_id]
        flags = int(body.get("flags") or 0)
        message = message_payload(
            message_id=self.state.ids.next(), channel=channel, author=self.state.bot,
            content=body.get("content") or "", webhook_id=self.state.bot.id, flags=flags,
        )
        self.state.store_message(message)
        record.followup_ids.append(message["id"])
        self._record("followup", channel.id, body, 200, message["id"])
        if not flags & EPHEMERAL:
            await self.dispatch("MESSAGE_CREATE", message)
        return reply(message, 200, limited)

    # --- CDN -----------------------------------------------------------------------
    async def cdn(self, request: web.Request) -> web.Response:
        self.state.cdn_requests.append(
            CdnRequest(time.time(), request.path, "Authorization" in request.headers)
        )
        found = self.state.cdn_files.get(request.path)
        if found is None or request.query.get("hm") is None:
            return web.Response(status=404, text="Not Found")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)
