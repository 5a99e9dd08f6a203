"""What the two API dialects (chat_api, responses_api) share with the client loop."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.model.tools import PendingCall
from core.model.types import ImagePart, ModelRequest, TextDelta
from core.settings import Settings
from core.types import ToolExchange, Usage

Detail = Literal["low", "high", "auto"]


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """How one model request ended: the calls it asked for, its usage, its stop reason."""

    calls: tuple[PendingCall, ...]
    usage: Usage
    finish_reason: str  # "stop" | "length" | "content_filter" | "tool_calls" | ...


class Dialect(Protocol):
    """One wire API (Chat Completions or Responses) as the tool loop needs it."""

    def transcript(self, request: ModelRequest) -> list[dict[str, Any]]:
        """The conversation in this API's message/item shape (mutated as rounds add to it)."""
        ...

    def round(
        self, transcript: list[dict[str, Any]], request: ModelRequest
    ) -> AsyncIterator[TextDelta | RoundOutcome]:
        """Stream one request: TextDeltas as they arrive, then exactly one RoundOutcome."""
        ...

    def feed_back(
        self, transcript: list[dict[str, Any]], text: str, exchanges: tuple[ToolExchange, ...]
    ) -> None:
        """Append the round's calls and their outputs so the next request sees them."""
        ...


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_detail(part: ImagePart, settings: Settings) -> Detail:
    # A part's own "auto" means "no preference": the configured MODEL_IMAGE_DETAIL applies.
    return part.detail if part.detail != "auto" else settings.model_image_detail


def output_cap(request: ModelRequest, settings: Settings) -> int | None:
    return request.max_output_tokens or settings.model_max_completion_tokens


def count(obj: object, *path: str) -> int:
    """A token count at obj.path...; providers omit detail objects, so absent means 0."""
    for name in path:
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if obj is None:
            return 0
    return obj if isinstance(obj, int) else 0


def sampling(settings: Settings) -> dict[str, Any]:
    """temperature / top_p, only when configured (reasoning models refuse them)."""
    params: dict[str, Any] = {}
    if settings.model_temperature is not None:
        params["temperature"] = settings.model_temperature
    if settings.model_top_p is not None:
        params["top_p"] = settings.model_top_p
    return params


def shared_params(
    request: ModelRequest, settings: Settings, tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """Parameters both APIs spell the same way: sampling, cache key, tools, extra body."""
    params = sampling(settings)
    if request.cache_key:
        params["prompt_cache_key"] = request.cache_key
    if request.tools_enabled and tools:
        params["tools"] = tools
    if settings.model_extra_body:
        params["extra_body"] = settings.model_extra_body
    return params
