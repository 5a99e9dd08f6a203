"""ConversationService: one turn = dedupe → lease → history → media → context → model → stream → persist."""

from __future__ import annotations

from core.model.types import ModelClient
from core.ports import ChatPort, Store
from core.settings import Settings
from core.types import Inbound, ThreadKey, Usage


class ConversationService:
    def __init__(self, *, settings: Settings, store: Store, model: ModelClient) -> None:
        self.settings = settings
        self.store = store
        self.model = model

    async def handle(self, inbound: Inbound, port: ChatPort) -> None:
        """Answer one inbound message in its thread. Never raises: failures are shown."""
        raise NotImplementedError

    async def knows_thread(self, key: ThreadKey) -> bool:
        """True when the bot is part of this thread (follow-ups need no mention)."""
        raise NotImplementedError

    async def resolve_key(self, platform: str, channel: str, platform_id: str) -> ThreadKey | None:
        """The thread a stored message belongs to (Discord reply chains)."""
        raise NotImplementedError

    async def reset(self, key: ThreadKey) -> None:
        raise NotImplementedError

    async def usage(
        self, *, since: float, channel: str | None = None, user_id: str | None = None
    ) -> Usage:
        raise NotImplementedError
