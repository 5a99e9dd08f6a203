"""The emulator's REST API and CDN, answering unmodified discord.py the way Discord does."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.fakes.discord_interactions import Interactions
from tests.fakes.discord_payloads import (
    FakeChannel,
    application_payload,
    iso_now,
    message_payload,
)
from tests.fakes.discord_state import CdnRequest, EmulatorState, content_error
from tests.fakes.discord_writes import EPHEMERAL, Dispatch, Writes, error, reply

__all__ = ["EPHEMERAL", "Rest"]

NONCE_MAX_CHARS = 25
NONCE_WINDOW_S = 120.0  # Discord checks enforce_nonce "in the past few minutes"


class Rest(Writes):
    def __init__(self, state: EmulatorState, dispatch: Dispatch) -> None:
        super().__init__(state, dispatch)
        self.interactions = Interactions(state, dispatch)

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
            *self.interactions.routes(p),
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
        # Interaction responses and their webhooks are outside the global limit.
        if request.path.startswith("/api/") and not public:
            limited = self.take_global()
            if limited is not None:
                return limited
        if request.body_exists and request.content_type != "application/json":
            return error(400, 50109, "The request body contains invalid JSON.")
        return await handler(request)

    def _channel(self, request: web.Request) -> FakeChannel | None:
        return self.state.channels.get(request.match_info["cid"])

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
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > NONCE_MAX_CHARS:
            self._record("post", channel.id, body, 400)
            return error(400, 50035, "Invalid Form Body: nonce is longer than 25")
        if nonce is not None and body.get("enforce_nonce"):
            seen = self.state.nonces.get(str(nonce))
            if seen is not None and self.state.now() - seen[0] < NONCE_WINDOW_S:
                # Discord: the message created earlier with this nonce, not a new one.
                self._record("post-deduped", channel.id, body, 200, seen[1])
                return reply(self.state.messages[seen[1]], 200, limited)
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
        if nonce is not None and body.get("enforce_nonce"):
            self.state.nonces[str(nonce)] = (self.state.now(), message["id"])
        replied = referenced["author"]["id"] if referenced else None
        self._record("post", channel.id, body, 200, message["id"], replied)
        await self.dispatch("MESSAGE_CREATE", message)
        if self.state.lose_post_answers:  # created, but the bot never hears so
            if self.state.lose_post_answers.pop(0) == "reset":
                assert request.transport is not None
                request.transport.abort()
            return web.Response(status=502, text="<html>502 Bad Gateway</html>",
                                content_type="text/html")
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
