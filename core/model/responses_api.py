"""Responses API dialect: request mapping and one streamed round.

Streamed events are told apart by `event.type` only: the SDK parses event types it
does not know into arbitrary classes, so isinstance checks would silently miss them.

History is sent in full each time (no previous_response_id), so a thread keeps
working when MODEL_API changes or a provider does not store responses. Function
calls are replayed without their item ids: an id would make OpenAI look for the
reasoning item that preceded the call, which a stateless request does not carry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from openai import AsyncOpenAI, AsyncStream
from openai.types.responses import ResponseStreamEvent

from core.model.errors import stream_event_error
from core.model.tools import FunctionTool, PendingCall
from core.model.types import (
    FilePart,
    ImagePart,
    ModelMessage,
    ModelRequest,
    TextDelta,
    TextPart,
)
from core.model.wire import (
    RoundOutcome,
    count,
    data_url,
    image_detail,
    output_cap,
    shared_params,
)
from core.settings import Settings
from core.types import ToolExchange, Usage

log = logging.getLogger(__name__)

# The Responses API refuses max_output_tokens below 16.
MIN_OUTPUT_TOKENS = 16

_HOSTED_SHAPES: dict[str, dict[str, Any]] = {"web_search": {"type": "web_search_preview"}}

_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _call_items(exchanges: Sequence[ToolExchange]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"type": "function_call", "call_id": ex.call_id, "name": ex.name,
         "arguments": ex.arguments or "{}"}
        for ex in exchanges
    ]
    items += [
        {"type": "function_call_output", "call_id": ex.call_id, "output": ex.output}
        for ex in exchanges
    ]
    return items


def _usage(response: object) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    return Usage(
        prompt_tokens=count(usage, "input_tokens"),
        completion_tokens=count(usage, "output_tokens"),
        cached_tokens=count(usage, "input_tokens_details", "cached_tokens"),
        reasoning_tokens=count(usage, "output_tokens_details", "reasoning_tokens"),
    )


class ResponsesDialect:
    def __init__(
        self, sdk: AsyncOpenAI, settings: Settings, tools: Sequence[FunctionTool],
        hosted: Sequence[str] = (),
    ) -> None:
        self._sdk = sdk
        self._settings = settings
        self._tools: list[dict[str, Any]] = [
            {"type": "function", "name": t.name, "description": t.description,
             "parameters": t.parameters, "strict": t.strict}
            for t in tools
        ]
        self._tools += [_HOSTED_SHAPES[name] for name in hosted]

    # --- request mapping ----------------------------------------------------------------

    def _user_content(self, message: ModelMessage) -> str | list[dict[str, Any]]:
        if len(message.parts) == 1 and isinstance(message.parts[0], TextPart):
            return message.parts[0].text
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "input_text", "text": part.text})
            elif isinstance(part, ImagePart):
                content.append({"type": "input_image",
                                "image_url": data_url(part.mime, part.data),
                                "detail": image_detail(part, self._settings)})
            elif isinstance(part, FilePart):
                content.append({"type": "input_file", "filename": part.name,
                                "file_data": data_url(part.mime, part.data)})
        return content

    def transcript(self, request: ModelRequest) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role == "user":
                items.append({"role": "user", "content": self._user_content(message)})
                continue
            if message.tools:
                # Calls and their outputs sit right before the answer they led to.
                items += _call_items(message.tools)
            text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
            if text or not message.tools:
                items.append({"role": "assistant", "content": text})
        return items

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        settings = self._settings
        params: dict[str, Any] = {}
        if request.instructions:
            params["instructions"] = request.instructions
        if settings.model_reasoning_effort:
            params["reasoning"] = {"effort": settings.model_reasoning_effort}
        if settings.model_verbosity:
            params["text"] = {"verbosity": settings.model_verbosity}
        cap = output_cap(request, settings)
        if cap is not None:
            params["max_output_tokens"] = max(cap, MIN_OUTPUT_TOKENS)
        params.update(shared_params(request, settings, self._tools))
        return params

    # --- one round -------------------------------------------------------------------------

    async def round(
        self, transcript: list[dict[str, Any]], request: ModelRequest
    ) -> AsyncIterator[TextDelta | RoundOutcome]:
        # With **params mypy cannot pick the stream=True overload; stream=True makes it a stream.
        stream = cast("AsyncStream[ResponseStreamEvent]", await self._sdk.responses.create(
            model=self._settings.model_name,
            input=transcript,  # type: ignore[arg-type]  # plain dicts in the API's shape
            stream=True,
            **self._params(request),
        ))
        calls: dict[str, PendingCall] = {}  # by item id, in the order they started
        usage = Usage()
        finish = "stop"
        async with stream:
            async for event in stream:
                kind = getattr(event, "type", "")
                if kind in ("response.output_text.delta", "response.refusal.delta"):
                    delta = getattr(event, "delta", "")
                    if delta:
                        yield TextDelta(delta)
                elif kind in ("response.output_item.added", "response.output_item.done"):
                    item = getattr(event, "item", None)
                    if getattr(item, "type", None) == "function_call":
                        item_id = str(getattr(item, "id", None) or getattr(item, "call_id", ""))
                        known = calls.get(item_id)
                        arguments = getattr(item, "arguments", "") or ""
                        if known is not None and not arguments:
                            arguments = known.arguments
                        calls[item_id] = PendingCall(
                            str(getattr(item, "call_id", "") or item_id),
                            str(getattr(item, "name", "") or ""), str(arguments))
                elif kind == "response.function_call_arguments.delta":
                    self._extend(calls, event, getattr(event, "delta", "") or "", replace=False)
                elif kind == "response.function_call_arguments.done":
                    self._extend(calls, event, getattr(event, "arguments", "") or "", replace=True)
                elif kind in ("response.completed", "response.incomplete"):
                    response = getattr(event, "response", None)
                    usage = _usage(response)
                    details = getattr(response, "incomplete_details", None)
                    reason = getattr(details, "reason", None)
                    finish = _INCOMPLETE_REASONS.get(str(reason), "stop") if reason else "stop"
                elif kind == "response.failed":
                    error = getattr(getattr(event, "response", None), "error", None)
                    raise stream_event_error(getattr(error, "message", None),
                                             getattr(error, "code", None), failed=True)
                elif kind == "error":
                    raise stream_event_error(getattr(event, "message", None),
                                             getattr(event, "code", None), failed=False)
        pending = tuple(c for c in calls.values() if c.name)
        if pending and finish == "stop":
            finish = "tool_calls"
        yield RoundOutcome(pending, usage, finish)

    @staticmethod
    def _extend(calls: dict[str, PendingCall], event: object, text: str, *, replace: bool) -> None:
        item_id = str(getattr(event, "item_id", ""))
        call = calls.get(item_id) or PendingCall(item_id, "", "")
        arguments = text if replace else call.arguments + text
        calls[item_id] = PendingCall(call.call_id, call.name, arguments)

    def feed_back(
        self, transcript: list[dict[str, Any]], text: str, exchanges: tuple[ToolExchange, ...]
    ) -> None:
        if text:
            transcript.append({"role": "assistant", "content": text})
        transcript.extend(_call_items(exchanges))
