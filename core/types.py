"""Value types shared by the core, the adapters and the stores.

Everything here is immutable and platform-free: adapters translate platform
events into these, the core never sees a Slack or Discord object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant"]
MediaKind = Literal["image", "pdf", "text"]
MessageStatus = Literal["complete", "streaming", "partial", "failed"]


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """Opaque conversation address; only its adapter interprets the parts."""

    platform: str  # "slack" | "discord" | "console"
    space: str  # Slack team id | Discord guild id | "dm"
    channel: str
    root: str  # Slack thread_ts | Discord thread id or reply-chain root id

    def __str__(self) -> str:
        return f"{self.platform}:{self.space}:{self.channel}:{self.root}"

    @classmethod
    def parse(cls, text: str) -> ThreadKey:
        platform, space, channel, root = text.split(":", 3)
        return cls(platform, space, channel, root)


@dataclass(frozen=True, slots=True)
class FileRef:
    """An attachment as the platform announced it; nothing is downloaded yet."""

    id: str
    name: str
    url: str
    declared_size: int | None = None
    declared_type: str | None = None  # the platform's mimetype claim; never trusted


@dataclass(frozen=True, slots=True)
class Inbound:
    """One user message, already converted from platform markup to Markdown."""

    key: ThreadKey
    message_id: str  # platform message id (Slack ts, Discord snowflake)
    author_id: str
    author_name: str
    text: str
    files: tuple[FileRef, ...] = ()
    addressed: bool = True  # mention, DM, reply to the bot, or a thread it is in
    reply_to: str | None = None  # platform id of the parent; None = the thread's tip
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class Media:
    """An attachment after normalisation; stored once by content hash."""

    kind: MediaKind
    mime: str
    name: str
    data: bytes  # normalised bytes (re-encoded image, PDF as-is, UTF-8 text)
    sha256: str
    width: int | None = None
    height: int | None = None
    note: str = field(default="", compare=False)  # told to the user, e.g. "only the first frame"


@dataclass(frozen=True, slots=True)
class MediaRef:
    """What a stored message keeps of an attachment: the hash and a label."""

    sha256: str
    kind: MediaKind
    name: str


@dataclass(frozen=True, slots=True)
class ToolExchange:
    """One function call the model made and the result we fed back."""

    call_id: str
    name: str
    arguments: str  # JSON text as the model produced it
    output: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append to a thread's history."""

    key: ThreadKey
    role: Role
    author_id: str
    author_name: str
    text: str
    platform_id: str | None = None  # None until the platform assigned one
    parent_id: int | None = None  # store id of the parent; None = thread root
    media: tuple[MediaRef, ...] = ()
    tools: tuple[ToolExchange, ...] = ()
    status: MessageStatus = "complete"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    key: ThreadKey
    role: Role
    author_id: str
    author_name: str
    text: str
    platform_id: str | None
    parent_id: int | None
    created_at: float
    media: tuple[MediaRef, ...] = ()
    tools: tuple[ToolExchange, ...] = ()
    status: MessageStatus = "complete"
    extra: dict[str, str] = field(default_factory=dict, compare=False)
