"""An in-memory chat platform for conversation tests (errbot-style test backend).

`conversation` gives a harness that reads like a chat:

    reply = await conversation.say("hello", files={"cat.jpg": jpeg_bytes})
    assert "echo: hello" in reply
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest_asyncio

from bots.compose import Core, open_core
from core.ports import FileRefused, WriteLimits
from core.settings import Settings
from core.types import FileRef, Inbound, ThreadKey
from tests.fakes.known_secrets import MODEL_API_KEY
from tests.fakes.model_server import FakeModelServer


@dataclass
class Write:
    at: float
    kind: str  # post | edit | finish | status
    message_id: str
    text: str
    reply_to: str | None = None  # posts: the message answered


@dataclass
class MemoryPort:
    """A ChatPort that keeps what a user would see, and every write with its time."""

    max_chars: int = 4000
    min_gap_s: float = 0.05
    files: dict[str, bytes] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    fetch_delay_s: float = 0.0  # a slow file host
    fetching: asyncio.Event = field(default_factory=asyncio.Event)  # a download began

    def limits(self, key: ThreadKey) -> WriteLimits:
        return WriteLimits(self.max_chars, self.min_gap_s, f"memory:{key.channel}", 50.0, 10)

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        assert len(markdown) <= self.max_chars
        message_id = f"bot-{len(self.messages) + 1}"
        self.messages[message_id] = markdown
        self.writes.append(Write(time.monotonic(), "post", message_id, markdown, reply_to))
        return message_id

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        assert len(markdown) <= self.max_chars
        self.messages[message_id] = markdown
        self.writes.append(Write(time.monotonic(), "edit", message_id, markdown))

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self.messages.get(message_id) != markdown:
            self.messages[message_id] = markdown
            self.writes.append(Write(time.monotonic(), "finish", message_id, markdown))

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        self.writes.append(Write(time.monotonic(), "status", "", status or ""))

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        self.downloads.append(ref.name)
        self.fetching.set()
        await asyncio.sleep(self.fetch_delay_s)
        data = self.files.get(ref.url)
        if data is None:
            raise FileRefused(ref.name, "is no longer available")
        if len(data) > max_bytes:
            raise FileRefused(ref.name, f"is larger than {max_bytes} bytes")
        return data


@dataclass
class Conversation:
    core: Core
    port: MemoryPort
    model: FakeModelServer
    key: ThreadKey = field(default_factory=lambda: ThreadKey("memory", "team", "general", "t1"))
    counter: int = 0

    async def say(
        self,
        text: str,
        *,
        files: dict[str, bytes] | None = None,
        author: str = "Alice",
        reply_to: str | None = None,
        message_id: str | None = None,
        addressed: bool = True,
    ) -> str:
        """Post as a user; return the text of the bot messages this turn produced."""
        self.counter += 1
        refs = []
        for name, data in (files or {}).items():
            url = f"mem://{self.counter}/{name}"
            self.port.files[url] = data
            refs.append(FileRef(id=url, name=name, url=url, declared_size=len(data)))
        before = set(self.port.messages)
        inbound = Inbound(
            key=self.key, message_id=message_id or f"u{self.counter}", author_id=author.lower(),
            author_name=author, text=text, files=tuple(refs), reply_to=reply_to,
            addressed=addressed,
        )
        await self.core.service.handle(inbound, self.port)
        new = [mid for mid in self.port.messages if mid not in before]
        return "\n".join(self.port.messages[mid] for mid in new)


def settings_for(model: FakeModelServer, db: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "MODEL_BASE_URL": model.base_url,
        "MODEL_API_KEY": MODEL_API_KEY,
        "DATABASE_URL": f"sqlite:///{db}",
        "MODEL_MAX_RETRIES": 0,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


@pytest_asyncio.fixture
async def conversation(
    model_server: FakeModelServer, tmp_path: Path
) -> AsyncIterator[Conversation]:
    async with open_core(settings_for(model_server, tmp_path / "t.db")) as core:
        yield Conversation(core, MemoryPort(), model_server)
