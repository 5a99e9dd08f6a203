"""The emulator's interaction endpoints: the 3-second callback, then the token's webhook
(the original response and follow-ups), as Discord answers them."""

from __future__ import annotations

import time

from aiohttp import web

from tests.fakes.discord_payloads import Json, message_payload
from tests.fakes.discord_state import InteractionRecord, content_error
from tests.fakes.discord_writes import EPHEMERAL, LOADING, Writes, error, reply

INTERACTION_DEADLINE_S = 3.0


class Interactions(Writes):
    def routes(self, prefix: str) -> list[web.RouteDef]:
        p = prefix
        return [
            web.post(f"{p}/interactions/{{iid}}/{{token}}/callback", self.callback),
            web.get(f"{p}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self.webhook_get),
            web.patch(f"{p}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self.webhook_edit),
            web.post(f"{p}/webhooks/{{app}}/{{token}}", self.followup),
        ]

    def _interaction(self, token: str) -> InteractionRecord | None:
        return next((i for i in self.state.interactions.values() if i.token == token), None)

    def _token_expired(self, record: InteractionRecord | None) -> web.Response | None:
        """Discord's answer once an interaction token outlived its 15 minutes."""
        if record is None or time.monotonic() - record.created <= self.state.token_lifetime_s:
            return None
        return error(401, 50027, "Invalid Webhook Token")

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
        if expired := self._token_expired(record):
            return expired
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
        if expired := self._token_expired(record):
            self._record(kind, record.channel_id, body, 401, message["id"])
            return expired
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
        if expired := self._token_expired(record):
            self._record("followup", record.channel_id, body, 401)
            return expired
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
