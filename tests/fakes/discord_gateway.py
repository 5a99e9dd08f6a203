"""The emulator's gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME, dispatch."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import Json, application_payload, guild_payload
from tests.fakes.discord_state import EmulatorState

MESSAGE_CONTENT_INTENT = 1 << 15
HEARTBEAT_INTERVAL_MS = 41_250
EVENT_LOG_LIMIT = 500


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    events: list[tuple[int, str, Json]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    redeliver_from: int | None = None  # a test asks to resend events from this seq on

    def record(self, event: str, data: Json) -> tuple[int, str, Json]:
        self.seq += 1
        entry = (self.seq, event, data)
        self.events.append(entry)
        del self.events[:-EVENT_LOG_LIMIT]
        return entry


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

    # --- sending -------------------------------------------------------------
    async def dispatch(self, event: str, data: Json) -> None:
        """Send an event to every session (buffered for resume while disconnected)."""
        self.dispatched.append((event, data))
        del self.dispatched[:-EVENT_LOG_LIMIT]
        for session in list(self.sessions.values()):
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
                session.redeliver_from = next(
                    seq for seq, event, data in session.events
                    if event == "MESSAGE_CREATE" and data["id"] == redeliver_message
                )
            if session.ws is not None and not session.ws.closed:
                await session.ws.send_str(json.dumps({"op": 7, "d": None}))
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
        session = Session(uuid.uuid4().hex, int(data.get("intents", 0)), ws=ws)
        self.sessions = {session.id: session}  # one bot, one shard
        ready = {
            "v": 10,
            "user": dict(self.state.bot.payload(), verified=True, mfa_enabled=False),
            "guilds": [{"id": self.state.guild_id, "unavailable": True}],
            "session_id": session.id,
            "resume_gateway_url": self._gateway_url(),
            "shard": [0, 1],
            "application": {"id": self.state.bot.id, "flags": application_payload(
                self.state.bot.id, self.state.app_owner)["flags"]},
            "private_channels": [],
            "relationships": [],
        }
        await self._send_event(session, session.record("READY", ready))
        await self._send_event(session, session.record("GUILD_CREATE", self.guild_create()))
        self.identified.set()
        return session

    def guild_create(self) -> Json:
        state = self.state
        return guild_payload(
            state.guild_id,
            name="Threadwise Test",
            owner_id=state.owner.id,
            roles=list(state.roles.values()),
            channels=state.guild_channels(),
            threads=state.guild_threads(),
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
