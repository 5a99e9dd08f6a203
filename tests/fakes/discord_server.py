"""A Discord emulator for tests: gateway + REST + CDN on 127.0.0.1, spoken to by real discord.py.

Use the `discord_server` fixture; point DISCORD_API_URL at `api_url` and DISCORD_GATEWAY_URL at
`gateway_url`. Fake users talk with `user_says(...)` and `invoke_command(...)`; tests read what a
person would see with `messages(channel_id)` and what the bot did with `writes`, `rate_limits`,
`typing`, `cdn_requests`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.discord_gateway import Gateway, shard_for
from tests.fakes.discord_payloads import (
    DISCORD_EPOCH_MS,
    FakeChannel,
    FakeUser,
    Json,
    Upload,
    attachment_payload,
    message_payload,
)
from tests.fakes.discord_rest import EPHEMERAL, Rest
from tests.fakes.discord_state import EmulatorState, InteractionRecord, RateLimitHit, Write

__all__ = ["DiscordServer", "Upload", "discord_server"]

OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}
READ_HISTORY = 1 << 16
ATTACHMENT_OPTION = 11


class DiscordServer:
    def __init__(self) -> None:
        self.state = EmulatorState()
        self.gateway = Gateway(self.state, lambda: self.gateway_url)
        self.rest = Rest(self.state, self.gateway.dispatch)
        self._runners: list[web.AppRunner] = []
        self.base = ""
        self.cdn_base = ""

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(middlewares=[self.rest.middleware])
        app.add_routes([web.get("/gateway", self.gateway.handle), *self.rest.routes("/api/v10")])
        cdn = web.Application()
        cdn.add_routes([web.get("/attachments/{tail:.*}", self.rest.cdn)])
        self.base = await self._serve(app)
        self.cdn_base = await self._serve(cdn)

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        await self.gateway.close_all()
        for runner in self._runners:
            await runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/gateway"

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def bot(self) -> FakeUser:
        return self.state.bot

    @property
    def guild_id(self) -> str:
        return self.state.guild_id

    # --- the world -------------------------------------------------------------
    def user(self, name: str) -> FakeUser:
        return self.state.users[name]

    def role_id(self, name: str) -> str:
        return self.state.roles[name].id

    def channel_id(self, name: str = "general") -> str:
        return self.state.channel_named(name).id

    def dm_channel_id(self, user: str) -> str:
        return self.state.dm_with(self.user(user)).id

    def add_guild(self, name: str, *, shard: int = 0, shard_count: int = 1) -> str:
        """Another server the bot is in, with an id Discord routes to `shard` of
        `shard_count`; returns its id (give it channels with `add_channel`)."""
        base = int(self.state.ids.next())
        millis = base >> 22
        guild_id = str(((millis + (shard - millis) % shard_count) << 22) | (base & 0x3FFFFF))
        assert shard_for(guild_id, shard_count) == shard
        self.gateway.add_guild(guild_id, name)
        return guild_id

    def add_channel(self, name: str, *, guild_id: str | None = None) -> str:
        """A text channel in the test server (or in `guild_id`); returns its id."""
        channel = FakeChannel(self.state.ids.next(), name, 0, guild_id or self.guild_id)
        self.state.channels[channel.id] = channel
        return channel.id

    def add_user(self, name: str, *, bot: bool = False, roles: Sequence[str] = ()) -> FakeUser:
        return self.state.add_user(name, name.capitalize(), bot=bot, roles=tuple(roles))

    # --- fake users act ---------------------------------------------------------------
    def _author(self, author: str | FakeUser) -> FakeUser:
        return author if isinstance(author, FakeUser) else self.user(author)

    def _attach(self, channel: FakeChannel, uploads: Sequence[Upload]) -> list[Json]:
        out = []
        for upload in uploads:
            att_id = self.state.ids.next()
            path = f"/attachments/{channel.id}/{att_id}/{upload.name}"
            signature = hashlib.sha256(path.encode()).hexdigest()[:16]
            expires = format(int(time.time()) + 86_400, "x")
            url = f"{self.cdn_base}{path}?ex={expires}&is={expires}&hm={signature}"
            served_type = upload.content_type or "application/octet-stream"
            self.state.cdn_files[path] = (upload.data, served_type)
            out.append(attachment_payload(att_id, upload, url))
        return out

    async def user_says(
        self,
        channel_id: str,
        content: str,
        *,
        author: str | FakeUser = "alice",
        mentions_bot: bool = True,
        mentions: Sequence[str] = (),
        reply_to: str | None = None,
        attachments: Sequence[Upload] = (),
    ) -> str:
        """A user posts a message (mentioning the bot unless told not to); returns its id."""
        channel = self.state.channels[channel_id]
        user = self._author(author)
        mentioned = [self.user(n) for n in mentions]
        if mentions_bot:
            content = f"<@{self.bot.id}> {content}"
            mentioned.insert(0, self.bot)
        referenced = self.state.messages[reply_to] if reply_to else None
        if referenced is not None and referenced["author"]["id"] not in {u.id for u in mentioned}:
            replied = self.state.user_by_id(referenced["author"]["id"])
            if replied is not None:
                mentioned.append(replied)  # Discord lists the replied-to author as a mention
        message = message_payload(
            message_id=self.state.ids.next(), channel=channel, author=user, content=content,
            mentions=mentioned, attachments=self._attach(channel, attachments),
            referenced=referenced,
        )
        self.state.store_message(message)
        await self.gateway.dispatch("MESSAGE_CREATE", message)
        return str(message["id"])

    def _command(self, name: str) -> Json:
        commands = [*self.state.global_commands,
                    *self.state.guild_commands.get(self.guild_id, [])]
        for command in commands:
            if command["name"] == name:
                return command
        synced = [c["name"] for c in commands]
        raise KeyError(f"command /{name} was never synced (synced: {synced})")

    async def _interact(
        self, kind: int, name: str, options: dict[str, Any], *, channel_id: str | None,
        author: str | FakeUser, focused: str | None = None,
        attachments: dict[str, Upload] | None = None,
    ) -> InteractionRecord:
        command = self._command(name)
        channel = self.state.channels[channel_id or self.channel_id()]
        user = self._author(author)
        resolved: Json = {}
        opts: list[Json] = []
        for key, value in options.items():
            opt: Json = {"name": key, "type": OPTION_TYPES.get(type(value), 3), "value": value}
            if key == focused:
                opt["focused"] = True
            opts.append(opt)
        if attachments:
            payloads = {}
            for key, upload in attachments.items():
                [payload] = self._attach(channel, [upload])
                payloads[payload["id"]] = payload
                opts.append({"name": key, "type": ATTACHMENT_OPTION, "value": payload["id"]})
            resolved["attachments"] = payloads
        record = InteractionRecord(self.state.ids.next(), f"itoken-{self.state.ids.next()}",
                                   channel.id, time.monotonic(), user.payload())
        self.state.interactions[record.id] = record
        perms = self._permissions(user)
        app_perms = perms & ~READ_HISTORY if channel.id in self.state.unreadable else perms
        if (channel.id, user.id) in self.state.no_history:
            perms &= ~READ_HISTORY
        data: Json = {
            "id": record.id, "application_id": self.bot.id, "type": kind, "token": record.token,
            "version": 1, "channel_id": channel.id, "channel": channel.payload(),
            "app_permissions": str(app_perms), "locale": "en-US", "attachment_size_limit": 10 << 20,
            "entitlements": [], "authorizing_integration_owners": {"0": self.guild_id},
            "data": {"id": command["id"], "name": name, "type": 1, "options": opts,
                     "resolved": resolved},
        }
        if channel.guild_id is not None:
            data.update(guild_id=self.guild_id, guild_locale="en-US", context=0,
                        member=user.member(with_user=True, permissions=perms))
            data["data"]["guild_id"] = self.guild_id
        else:
            data.update(user=user.payload(), context=1)
        await self.gateway.dispatch("INTERACTION_CREATE", data)
        return record

    def _permissions(self, user: FakeUser) -> int:
        perms = self.state.roles["@everyone"].permissions
        for role in self.state.roles.values():
            if role.id in user.roles:
                perms |= role.permissions
        return perms

    async def invoke_command(
        self, name: str, options: dict[str, Any] | None = None, *, channel_id: str | None = None,
        author: str | FakeUser = "alice", attachments: dict[str, Upload] | None = None,
    ) -> InteractionRecord:
        """A user runs a slash command; returns the interaction (see `interaction_messages`)."""
        return await self._interact(2, name, options or {}, channel_id=channel_id, author=author,
                                    attachments=attachments)

    async def autocomplete(
        self, name: str, options: dict[str, Any], *, focused: str, author: str | FakeUser = "alice",
        channel_id: str | None = None, wait_s: float = 5.0,
    ) -> list[Json]:
        """A user types into an autocompleted option; returns the choices the bot offered."""
        record = await self._interact(4, name, options, channel_id=channel_id, author=author,
                                      focused=focused)
        await self.until(lambda: bool(record.callbacks), wait_s=wait_s)
        callback = record.callbacks[0]
        assert callback["type"] == 8, callback
        return list(callback["data"]["choices"])

    def add_thread(self, name: str, *, parent: str | None = None,
                   from_message: str | None = None) -> str:
        """A public thread in a channel (opened from a message: it takes that message's id)."""
        parent_channel = self.state.channels[parent or self.channel_id()]
        thread = FakeChannel(from_message or self.state.ids.next(), name, 11,
                             parent_channel.guild_id, parent_id=parent_channel.id,
                             owner_id=self.user("alice").id)
        self.state.channels[thread.id] = thread
        return thread.id

    def seed(
        self, channel_id: str, content: str, *, author: str | FakeUser = "alice",
        attachments: Sequence[Upload] = (), at: float | None = None,
    ) -> str:
        """A message from before the bot looked (stored, not dispatched); `at` back-dates it."""
        channel = self.state.channels[channel_id]
        message_id = self.state.ids.next() if at is None else _snowflake_at(
            at, len(self.state.messages))
        message = message_payload(
            message_id=message_id, channel=channel, author=self._author(author),
            content=content, attachments=self._attach(channel, attachments),
        )
        self.state.store_message(message)
        return message_id

    def deny_history(self, channel_id: str, *, user: str | None = None) -> None:
        """Take Read Message History away from a user there (or from the bot: None)."""
        if user is None:
            self.state.unreadable.add(channel_id)
        else:
            self.state.no_history.add((channel_id, self.user(user).id))

    # --- faults ---------------------------------------------------------------------
    async def force_reconnect(self, *, redeliver_message: str | None = None) -> None:
        """Make the bot reconnect and RESUME, optionally resending a message it already saw."""
        await self.gateway.force_reconnect(redeliver_message=redeliver_message)

    async def drop_gateway(self, *, redeliver_message: str | None = None) -> None:
        """Cut the gateway connection without warning; the bot must RESUME by itself."""
        await self.gateway.drop(redeliver_message=redeliver_message)

    def send_429_without_via(self, count: int = 1) -> None:
        """The next `count` 429 answers lack the `Via` header (discord.py then raises)."""
        self.state.drop_via_next = count

    async def moderator_deletes(self, message_id: str) -> None:
        """Someone with Manage Messages deletes a message: gone for everyone (later edits
        of it get 404 Unknown Message), and Discord sends MESSAGE_DELETE."""
        message = self.state.messages.pop(message_id)
        self.state.channels[message["channel_id"]].message_ids.remove(message_id)
        deleted = {"id": message_id, "channel_id": message["channel_id"]}
        if message.get("guild_id") is not None:
            deleted["guild_id"] = message["guild_id"]
        await self.gateway.dispatch("MESSAGE_DELETE", deleted)

    def lose_post_answers(self, *how: str) -> None:
        """The next posts are created, then their answers lost: "502" (a proxy error
        after the fact; discord.py retries it) or "reset" (the connection drops)."""
        self.state.lose_post_answers.extend(how)

    def set_write_limit(self, writes: int, window_s: float) -> None:
        """Change the per-channel write bucket (e.g. a short window for fast fault tests)."""
        self.state.writes_per_window, self.state.window_s = writes, window_s
        self.state.buckets.clear()

    def set_global_limit(self, per_second: int) -> None:
        """Change the bot's global request limit (Discord's is 50 a second)."""
        self.state.global_window.limit = per_second

    def exhaust_bucket(self, channel_id: str) -> None:
        """Use up the channel's write budget for the current window."""
        window = self.state.bucket(f"channel:{channel_id}")
        while window.take(self.state.now()) == 0.0:
            pass

    # --- what tests read ---------------------------------------------------------------
    def messages(self, channel_id: str) -> list[Json]:
        """The channel as everyone sees it now (content after edits), oldest first.

        Ephemeral interaction responses are left out: only their invoker sees them
        (read those with `interaction_messages`).
        """
        return [m for m in self.state.channel_messages(channel_id)
                if not int(m.get("flags", 0)) & EPHEMERAL]

    def bot_messages(self, channel_id: str) -> list[Json]:
        return [m for m in self.messages(channel_id) if m["author"]["id"] == self.bot.id]

    def message(self, message_id: str) -> Json:
        return self.state.messages[message_id]

    def interaction_messages(self, record: InteractionRecord) -> list[Json]:
        ids = ([record.original_id] if record.original_id else []) + record.followup_ids
        return [self.state.messages[i] for i in ids]

    @property
    def writes(self) -> list[Write]:
        return self.state.writes

    @property
    def rate_limits(self) -> list[RateLimitHit]:
        return self.state.rate_limits

    @property
    def global_rate_limits(self) -> list[RateLimitHit]:
        """429s for the bot's global limit (each counts toward Discord's IP ban)."""
        return [hit for hit in self.state.rate_limits if hit.bucket == "global"]

    @property
    def cdn_requests(self) -> list[Any]:
        return self.state.cdn_requests

    @property
    def typing(self) -> list[tuple[float, str]]:
        return self.state.typing

    @property
    def identify_payloads(self) -> list[Json]:
        return self.state.identify_payloads

    @property
    def command_syncs(self) -> list[tuple[str, list[Json]]]:
        return self.state.command_syncs

    async def until(self, predicate: Callable[[], bool], *, wait_s: float = 10.0) -> None:
        """Wait (polling) until predicate() holds; fail with a clear message otherwise."""
        deadline = time.monotonic() + wait_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {wait_s}s")
            await asyncio.sleep(0.02)


def _snowflake_at(at: float, counter: int) -> str:
    return str(((int(at * 1000) - DISCORD_EPOCH_MS) << 22) | (counter & 0x3FFFFF))


@pytest_asyncio.fixture
async def discord_server() -> AsyncIterator[DiscordServer]:
    server = DiscordServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
