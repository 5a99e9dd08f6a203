"""The small ports the core talks through. Adapters and stores implement them."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.types import (
    FileRef,
    Media,
    MediaRef,
    MessageStatus,
    NewMessage,
    StoredMessage,
    ThreadKey,
    ToolExchange,
    Usage,
)


@dataclass(frozen=True, slots=True)
class WriteLimits:
    """How fast and how much an adapter may write; the streamer paces by these."""

    max_chars: int  # one message's visible limit
    min_edit_gap_s: float  # per message: the quickest two edits may follow
    bucket: str  # name of the shared write budget (e.g. a workspace or a channel)
    bucket_rate: float  # writes per second the bucket refills
    bucket_burst: int  # writes the bucket may hold
    # None: posts count against `bucket` too (Discord: one budget per channel). Else
    # the budget posts have of their own (Slack: ~1 message per second per channel,
    # apart from chat.update's tier). The core waits for it before reading the text,
    # so a post that had to queue still carries everything written meanwhile.
    post_bucket: str | None = None
    post_rate: float = 1.0
    post_burst: int = 1


NONCE_CHARS = 25  # Discord's limit for a message nonce


def new_nonce() -> str:
    """An identity for one message, kept across its retries (see ChatPort.post)."""
    return uuid.uuid4().hex[:NONCE_CHARS]


class ChatPort(Protocol):
    """What the core needs from a platform. The core decides when; the adapter how."""

    def limits(self, key: ThreadKey) -> WriteLimits: ...

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        """Post a new message in the thread; return its platform id. `final`: the
        text is complete and will not grow (a port may skip opening a native stream).
        `nonce`: the same for every retry of one message (at most 25 characters); a
        platform that dedupes on it creates the message at most once."""
        ...

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None: ...

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        """Write the final text (closes a native stream where there is one)."""
        ...

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        """Show or clear a waiting indicator (typing, assistant status)."""
        ...

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        """Download an attachment; raise FileRefused when it may or can not be read."""
        ...


class FileRefused(Exception):
    """An attachment we will not use; the message is shown to the user."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class StaleLease(Exception):
    """A write came from a holder whose lease was taken over."""


class Lease(Protocol):
    token: str

    async def renew(self) -> None: ...

    async def confirm(self) -> bool:
        """True while the holder may still act (asked before each platform write);
        False once the lease was taken over or its term ran out unconfirmed."""
        ...

    @property
    def lost(self) -> bool: ...


class Coordination(Protocol):
    async def first_sighting(self, idem_key: str, ttl_s: int) -> bool:
        """Atomically record the key; True only for the first caller within ttl."""
        ...

    def lease(self, name: str, ttl_s: float) -> AbstractAsyncContextManager[Lease]:
        """Hold an exclusive, token-guarded, renewable lease; waits while another holds it."""
        ...

    async def lease_held(self, name: str) -> bool:
        """Whether someone holds this lease now (an unexpired one exists)."""
        ...


@runtime_checkable
class HistoryStore(Protocol):
    async def append(self, msg: NewMessage, *, lease_token: str | None = None) -> StoredMessage:
        """Append; with a lease token, raise StaleLease if the thread's lease moved on."""
        ...

    async def update(
        self,
        message_id: int,
        *,
        text: str | None = None,
        status: MessageStatus | None = None,
        platform_id: str | None = None,
        tools: tuple[ToolExchange, ...] | None = None,
        media: tuple[MediaRef, ...] | None = None,
        lease_token: str | None = None,
    ) -> None:
        """Change a stored message; with a lease token, raise StaleLease (and change
        nothing) if the thread's lease moved on, exactly as append() does."""
        ...

    async def load_thread(self, key: ThreadKey) -> list[StoredMessage]:
        """All messages of one thread, oldest first (O(thread), not O(database))."""
        ...

    async def find(self, key: ThreadKey, platform_id: str) -> StoredMessage | None:
        """The message of this thread posted as platform_id (any of its parts)."""
        ...

    async def locate(self, platform: str, channel: str, platform_id: str) -> StoredMessage | None:
        """Find a message by platform id without knowing its thread (reply chains)."""
        ...

    async def add_platform_id(self, message_id: int, platform_id: str) -> None:
        """Record another platform message (a continuation part) of a stored message."""
        ...

    async def reset_thread(self, key: ThreadKey) -> None:
        """Start fresh: later loads of this thread ignore what came before."""
        ...

    async def streaming_messages(self, key: ThreadKey) -> list[StoredMessage]:
        """Replies left in 'streaming' state (a process died mid-reply)."""
        ...

    async def orphan_candidates(self, platform: str, older_than_s: float) -> list[StoredMessage]:
        """Replies of this platform, in any thread, still 'streaming' and created more
        than older_than_s ago, oldest first (a bounded batch). Candidates only: the
        caller proves one orphaned by taking its thread's lease (a live turn holds it)."""
        ...

    async def put_setting(self, name: str, value: str | None) -> None:
        """Keep a small named choice across restarts (None forgets it)."""
        ...

    async def settings(self, prefix: str) -> dict[str, str]:
        """Every kept choice whose name starts with prefix."""
        ...

    async def put_media(self, media: Media) -> None: ...

    async def get_media(self, sha256: str) -> Media | None: ...

    async def record_usage(
        self, key: ThreadKey, user_id: str, model: str, usage: Usage, at: float
    ) -> None: ...

    async def usage_since(
        self, *, since: float, channel: str | None = None, user_id: str | None = None
    ) -> Usage: ...

    async def close(self) -> None: ...


class Store(HistoryStore, Coordination, Protocol):
    """A backend that provides both history and coordination (SQLite, PostgreSQL)."""

