"""The emulator's gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME, dispatch.

Sharding as Discord does it: IDENTIFY may carry `shard: [id, count]`; that session then
gets only the guilds with `(guild_id >> 22) % count == id`, and DMs go to shard 0. A
session without a shard array is shard [0, 1] (everything). Extra guilds (beyond the
state's test guild) are added with `add_guild`, so several shards have work.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import (
    MEMBER_PERMISSIONS,
    FakeRole,
    Json,
    application_payload,
    guild_payload,
)
from tests.fakes.discord_state import EmulatorState

MESSAGE_CONTENT_INTENT = 1 << 15
HEARTBEAT_INTERVAL_MS = 41_250
EVENT_LOG_LIMIT = 500
INVALID_SHARD = 4010


def shard_for(guild_id: str, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (int(guild_id) >> 22) % shard_count


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    events: list[tuple[int, str, Json]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    redeliver_from: int | None = None  # a test asks to resend events from this seq on
    shard: tuple[int, int] = (0, 1)  # [shard_id, shard_count] from IDENTIFY

    def receives(self, data: Json) -> bool:
        """Whether an event with this payload goes to this session's shard."""
        shard_id, count = self.shard
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        if guild_id is None:
            return shard_id == 0  # DMs (and guild-less events) go to shard 0
        return shard_for(str(guild_id), count) == shard_id

    def record(self, event: str, data: Json) -> tuple[int, str, Json]:
        self.seq += 1
        entry = (self.seq, event, data)
        self.events.append(entry)
        del self.events[:-EVENT_LOG_LIMIT]
        return entry


def _seq_of(session: Session, message_id: str) -> int | None:
    """Where a message's MESSAGE_CREATE sits in a session's log (None: it never saw it)."""
    return next((seq for seq, event, data in session.events
                 if event == "MESSAGE_CREATE" and data["id"] == message_id), None)


class Gateway:
    def __init__(self, state: EmulatorState, gateway_url: Callable[[], str]) -> None:
        self.state = state
        self._gateway_url = gateway_url
        self.sessions: dict[str, Session] = {}
        self.heartbeats = 0
        self.resumes: list[str] = []
        self.dispatched: list[tuple[str, Json]] = []  # every event, as sent
        self.identified = asyncio.Event()
        self.resumed = asyncio.Event()
        self.extra_guilds: dict[str, str] = {}  # id -> name, besides the state's test guild

    def add_guild(self, guild_id: str, name: str) -> None:
        """Another guild the bot is in (add its channels to the state with this guild_id)."""
        self.extra_guilds[guild_id] = name

    def guild_ids(self, shard: tuple[int, int] = (0, 1)) -> list[str]:
        every = [self.state.guild_id, *self.extra_guilds]
        return [g for g in every if shard_for(g, shard[1]) == shard[0]]

    # --- sending -------------------------------------------------------------
    async def dispatch(self, event: str, data: Json) -> None:
        """Send an event to every session (buffered for resume while disconnected)."""
        self.dispatched.append((event, data))
        del self.dispatched[:-EVENT_LOG_LIMIT]
        for session in list(self.sessions.values()):
            if not session.receives(data):
                continue
            entry = session.record(event, self._for_session(session, event, data))
            await self._send_event(session, entry)

    def _for_session(self, session: Session, event: str, data: Json) -> Json:
        """Without the message-content intent, Discord blanks what was not addressed to us."""
        if event != "MESSAGE_CREATE" or session.intents & MESSAGE_CONTENT_INTENT:
            return data
        mentioned = any(m["id"] == self.state.bot.id for m in data.get("mentions", []))
        if mentioned or "guild_id" not in data or data["author"]["id"] == self.state.bot.id:
            return data
        return dict(data, content="", attachments=[], embeds=[])

    @staticmethod
    async def _send_event(session: Session, entry: tuple[int, str, Json]) -> None:
        seq, event, data = entry
        ws = session.ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": seq, "d": data}))
        except ConnectionError:
            session.ws = None

    async def force_reconnect(self, *, redeliver_message: str | None = None) -> None:
        """Ask the client to reconnect and resume (op 7).

        With `redeliver_message`, the resume replays everything from that message's
        MESSAGE_CREATE on, as Discord may when acknowledgements were lost.
        """
        for session in self.sessions.values():
            if redeliver_message is not None:
                session.redeliver_from = _seq_of(session, redeliver_message)
            if session.ws is not None and not session.ws.closed:
                await session.ws.send_str(json.dumps({"op": 7, "d": None}))
        self.resumed.clear()

    async def drop(self, *, redeliver_message: str | None = None) -> None:
        """Cut every connection as a network fault would (close 4000, no op 7 first).

        The client reconnects and RESUMEs; events dispatched meanwhile are buffered and
        replayed, and with `redeliver_message` so is everything from that message on.
        """
        for session in self.sessions.values():
            if redeliver_message is not None:
                session.redeliver_from = _seq_of(session, redeliver_message)
            ws, session.ws = session.ws, None
            if ws is not None and not ws.closed:
                await ws.close(code=4000, message=b"Unknown error")
        self.resumed.clear()

    async def close_all(self) -> None:
        for session in self.sessions.values():
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001)

    # --- the socket ----------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        hello = {"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}
        await ws.send_str(json.dumps(hello))
        session: Session | None = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            payload = json.loads(msg.data)
            op = payload.get("op")
            if op == 1:
                self.heartbeats += 1
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                session = await self._identify(ws, payload["d"])
            elif op == 6:
                session = await self._resume(ws, payload["d"])
        if session is not None and session.ws is ws:
            session.ws = None
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: Json) -> Session | None:
        if data.get("token") != self.state.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        self.state.identify_payloads.append({k: v for k, v in data.items() if k != "token"})
        shard_id, count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < count:
            await ws.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return None
        session = Session(uuid.uuid4().hex, int(data.get("intents", 0)), ws=ws,
                          shard=(shard_id, count))
        # Discord keeps every session: two processes on one token and shard (a rolling
        # deploy, or a bot started twice) each receive every event.
        self.sessions[session.id] = session
        guilds = self.guild_ids(session.shard)
        ready = {
            "v": 10,
            "user": dict(self.state.bot.payload(), verified=True, mfa_enabled=False),
            "guilds": [{"id": g, "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self._gateway_url(),
            "shard": list(session.shard),
            "application": {"id": self.state.bot.id, "flags": application_payload(
                self.state.bot.id, self.state.app_owner)["flags"]},
            "private_channels": [],
            "relationships": [],
        }
        await self._send_event(session, session.record("READY", ready))
        for guild_id in guilds:
            create = self.guild_create(guild_id)
            await self._send_event(session, session.record("GUILD_CREATE", create))
        self.identified.set()
        return session

    def guild_create(self, guild_id: str | None = None) -> Json:
        state = self.state
        guild_id = guild_id or state.guild_id
        if guild_id == state.guild_id:
            name, roles = "Threadwise Test", list(state.roles.values())
        else:  # an extra guild: just its @everyone role (its id is the guild's)
            name = self.extra_guilds[guild_id]
            roles = [FakeRole(guild_id, "@everyone", MEMBER_PERMISSIONS, 0)]
        return guild_payload(
            guild_id,
            name=name,
            owner_id=state.owner.id,
            roles=roles,
            channels=[c for c in state.guild_channels() if c.guild_id == guild_id],
            threads=[t for t in state.guild_threads() if t.guild_id == guild_id],
            members=state.guild_members(),
        )

    async def _resume(self, ws: web.WebSocketResponse, data: Json) -> Session | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.state.token:
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return None
        session.ws = ws
        self.resumes.append(session.id)
        last_seen = int(data.get("seq") or 0)
        if session.redeliver_from is not None:
            last_seen = min(last_seen, session.redeliver_from - 1)
            session.redeliver_from = None
        for entry in [e for e in session.events if e[0] > last_seen]:
            await self._send_event(session, entry)
        await self._send_event(session, session.record("RESUMED", {}))
        self.resumed.set()
        return session
