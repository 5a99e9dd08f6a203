"""Chat Completions dialect: request mapping and one streamed round.

Instructions go first as a `system` message. OpenAI's reasoning models treat
`system` as `developer`, while many OpenAI-compatible servers (vLLM, llama.cpp,
older gateways) reject the newer `developer` role, so `system` reaches the most
providers with the same effect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

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


@dataclass(slots=True)
class _CallBuffer:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


def _tool_calls(exchanges: Sequence[ToolExchange]) -> list[dict[str, Any]]:
    return [
        {"id": ex.call_id, "type": "function",
         "function": {"name": ex.name, "arguments": ex.arguments or "{}"}}
        for ex in exchanges
    ]


def _tool_results(exchanges: Sequence[ToolExchange]) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": ex.call_id, "content": ex.output} for ex in exchanges]


class ChatDialect:
    def __init__(self, sdk: AsyncOpenAI, settings: Settings, tools: Sequence[FunctionTool]) -> None:
        self._sdk = sdk
        self._settings = settings
        self._tools = [
            {"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": t.parameters, "strict": t.strict}}
            for t in tools
        ]

    # --- request mapping ----------------------------------------------------------------

    def _user_content(self, message: ModelMessage) -> str | list[dict[str, Any]]:
        if len(message.parts) == 1 and isinstance(message.parts[0], TextPart):
            return message.parts[0].text
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                content.append({"type": "image_url", "image_url": {
                    "url": data_url(part.mime, part.data),
                    "detail": image_detail(part, self._settings)}})
            elif isinstance(part, FilePart):
                content.append({"type": "file", "file": {
                    "filename": part.name, "file_data": data_url(part.mime, part.data)}})
        return content

    def transcript(self, request: ModelRequest) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if request.instructions:
            messages.append({"role": "system", "content": request.instructions})
        for message in request.messages:
            if message.role == "user":
                messages.append({"role": "user", "content": self._user_content(message)})
                continue
            text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
            if message.tools:
                # Calls and their results sit right before the answer they led to.
                messages.append({"role": "assistant", "tool_calls": _tool_calls(message.tools)})
                messages.extend(_tool_results(message.tools))
            if text or not message.tools:
                messages.append({"role": "assistant", "content": text})
        return messages

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        settings = self._settings
        params: dict[str, Any] = {"stream_options": {"include_usage": True}}
        if settings.model_reasoning_effort:
            params["reasoning_effort"] = settings.model_reasoning_effort
        if settings.model_verbosity:
            params["verbosity"] = settings.model_verbosity
        cap = output_cap(request, settings)
        if cap is not None:
            params["max_completion_tokens"] = cap  # never max_tokens: reasoning models refuse it
        params.update(shared_params(request, settings, self._tools))
        return params

    # --- one round -------------------------------------------------------------------------

    async def round(
        self, transcript: list[dict[str, Any]], request: ModelRequest
    ) -> AsyncIterator[TextDelta | RoundOutcome]:
        # With **params mypy cannot pick the stream=True overload; stream=True makes it a stream.
        stream = cast("AsyncStream[ChatCompletionChunk]", await self._sdk.chat.completions.create(
            model=self._settings.model_name,
            messages=transcript,  # type: ignore[arg-type]  # plain dicts in the API's shape
            stream=True,
            **self._params(request),
        ))
        buffers: dict[int, _CallBuffer] = {}
        usage = Usage()
        finish = "stop"
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = Usage(
                        prompt_tokens=count(chunk.usage, "prompt_tokens"),
                        completion_tokens=count(chunk.usage, "completion_tokens"),
                        cached_tokens=count(chunk.usage, "prompt_tokens_details", "cached_tokens"),
                        reasoning_tokens=count(
                            chunk.usage, "completion_tokens_details", "reasoning_tokens"),
                    )
                for choice in chunk.choices or ():
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta is not None:
                        if delta.content:
                            yield TextDelta(delta.content)
                        if delta.refusal:
                            yield TextDelta(delta.refusal)
                        for fragment in delta.tool_calls or ():
                            buffer = buffers.setdefault(fragment.index, _CallBuffer())
                            buffer.call_id = buffer.call_id or (fragment.id or "")
                            function = fragment.function
                            if function is not None:
                                # The name comes once; some providers repeat it whole.
                                buffer.name = buffer.name or (function.name or "")
                                buffer.arguments += function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
        calls = tuple(
            PendingCall(b.call_id or f"call_{uuid.uuid4().hex[:20]}", b.name, b.arguments)
            for _, b in sorted(buffers.items())
            if b.name
        )
        yield RoundOutcome(calls, usage, finish)

    def feed_back(
        self, transcript: list[dict[str, Any]], text: str, exchanges: tuple[ToolExchange, ...]
    ) -> None:
        call_message: dict[str, Any] = {"role": "assistant", "tool_calls": _tool_calls(exchanges)}
        if text:
            call_message["content"] = text
        transcript.append(call_message)
        transcript.extend(_tool_results(exchanges))
