"""The model layer's own vocabulary: one request shape and one event stream for both APIs."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, Protocol

from core.types import ToolExchange, Usage


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    data: bytes  # normalised bytes; sent as a base64 data URL
    mime: str
    detail: Literal["low", "high", "auto"] = "auto"


@dataclass(frozen=True, slots=True)
class FilePart:
    data: bytes  # PDF bytes; sent as file_data
    mime: str
    name: str


Part = TextPart | ImagePart | FilePart


@dataclass(frozen=True, slots=True)
class ModelMessage:
    role: Literal["user", "assistant"]
    parts: tuple[Part, ...]
    # On an assistant message: the function calls it made (and their results)
    # before its text. Rendered next to each other so they are never separated.
    tools: tuple[ToolExchange, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelRequest:
    instructions: str  # the system prompt: first, stable, cacheable
    messages: tuple[ModelMessage, ...]
    cache_key: str | None = None  # prompt_cache_key, one per thread
    max_output_tokens: int | None = None  # overrides the configured cap (e.g. `check`)
    tools_enabled: bool = True


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolRound:
    """The model called tools; we ran them and are feeding results back."""

    exchanges: tuple[ToolExchange, ...]


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str  # "stop", "length", "content_filter", "tool_rounds_exhausted", ...


ModelEvent = TextDelta | ToolRound | UsageReport | Finished


class ModelError(Exception):
    """A model failure with a short reason fit to show a user."""

    def __init__(self, reason: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retryable = retryable


class ModelClient(Protocol):
    model: str

    def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        """Run one turn (including the bounded tool loop) as a stream of events.

        Raises ModelError, possibly after some TextDelta events were yielded.
        """
        ...

    async def aclose(self) -> None: ...
