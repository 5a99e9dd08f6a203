"""OpenAIModelClient: one turn against an OpenAI-compatible provider, tools included.

The openai SDK does the HTTP work (and retries the opening request of a stream on
429/5xx/connection errors, honouring Retry-After). This module runs the bounded
tool loop on top of the chosen dialect and turns every failure into a ModelError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import replace

import openai
from openai import AsyncOpenAI

from core.model.builtin_tools import builtin_registry
from core.model.chat_api import ChatDialect
from core.model.errors import provider_host, to_model_error
from core.model.responses_api import ResponsesDialect
from core.model.tools import FunctionTool, ToolRegistry, run_calls
from core.model.types import (
    Finished,
    ModelError,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolRound,
    UsageReport,
)
from core.model.wire import Dialect, RoundOutcome
from core.settings import Settings, is_loopback_url
from core.types import Usage

log = logging.getLogger(__name__)

EXHAUSTED_NOTE = "(I stopped after too many tool calls without reaching an answer.)"


class OpenAIModelClient:
    """Satisfies core.model.types.ModelClient for MODEL_API=chat and MODEL_API=responses."""

    def __init__(self, settings: Settings, tools: ToolRegistry | None = None) -> None:
        registry = tools if tools is not None else builtin_registry()
        functions, hosted = registry.select(settings.model_tools)  # ValueError on unknown names
        if settings.model_api_key is not None:
            api_key = settings.model_api_key.get_secret_value()
        elif is_loopback_url(settings.model_base_url):
            api_key = "no-key-needed-on-loopback"  # local servers ignore it; the SDK wants one
        else:
            raise ValueError("MODEL_API_KEY is not set (GMI_API_KEY and OPENAI_API_KEY also work)")
        self.model = settings.model_name
        self.api = settings.model_api
        self._settings = settings
        self._host = provider_host(settings.model_base_url)
        self._functions: dict[str, FunctionTool] = {t.name: t for t in functions}
        self._cache_key_accepted = True  # until the provider says otherwise
        self._sdk = AsyncOpenAI(
            base_url=settings.model_base_url,
            api_key=api_key,
            max_retries=settings.model_max_retries,
            timeout=settings.model_timeout_s,
        )
        self._dialect: Dialect
        if settings.model_api == "responses":
            self._dialect = ResponsesDialect(self._sdk, settings, functions, hosted)
        else:
            if hosted:
                log.warning("MODEL_TOOLS: %s needs MODEL_API=responses; ignored on chat",
                            ", ".join(hosted))
            self._dialect = ChatDialect(self._sdk, settings, functions)

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The function tools offered to the model (hosted tools not included)."""
        return tuple(self._functions)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        """Run one turn: text as it streams, a ToolRound per tool round, usage, then Finished."""
        if not self._cache_key_accepted:
            request = replace(request, cache_key=None)
        transcript = self._dialect.transcript(request)
        total = Usage()
        produced_text = False
        rounds_run = 0
        while True:
            round_text: list[str] = []
            outcome: RoundOutcome | None = None
            try:
                async for event in self._dialect.round(transcript, request):
                    if isinstance(event, TextDelta):
                        round_text.append(event.text)
                        produced_text = True
                        yield event
                    else:
                        outcome = event
            except (openai.OpenAIError, json.JSONDecodeError, ModelError) as exc:
                error = to_model_error(exc, host=self._host, mid_stream=bool(round_text))
                if self._refuses_cache_key(error, request) and not round_text:
                    # Some OpenAI-compatible servers reject unknown fields: stop sending it.
                    log.info("the provider does not accept prompt_cache_key; not sending it")
                    self._cache_key_accepted = False
                    request = replace(request, cache_key=None)
                    continue
                log.warning("model call failed (%s): %s", self.api, error.reason)
                raise error from exc
            if outcome is None:  # cannot happen with our dialects; be explicit if it does
                raise ModelError("the model stream ended without a result", retryable=True)
            total += outcome.usage
            if not outcome.calls:
                yield UsageReport(total)
                yield Finished("stop" if outcome.finish_reason == "tool_calls"
                               else outcome.finish_reason)
                return
            if rounds_run >= self._settings.max_tool_rounds:
                log.warning("tool loop stopped after %d rounds", rounds_run)
                if not produced_text:
                    yield TextDelta(EXHAUSTED_NOTE)
                yield UsageReport(total)
                yield Finished("tool_rounds_exhausted")
                return
            exchanges = await run_calls(self._functions, outcome.calls)
            rounds_run += 1
            self._dialect.feed_back(transcript, "".join(round_text), exchanges)
            yield ToolRound(exchanges)

    @staticmethod
    def _refuses_cache_key(error: ModelError, request: ModelRequest) -> bool:
        return (
            request.cache_key is not None
            and error.status in (400, 422)
            and "prompt_cache_key" in error.reason
        )

    async def list_models(self) -> list[str]:
        """Model ids the provider lists (for `threadwise check`); raises ModelError."""
        try:
            page = await self._sdk.models.list()
            return [m.id async for m in page]
        except openai.OpenAIError as exc:
            raise to_model_error(exc, host=self._host) from exc

    async def aclose(self) -> None:
        await self._sdk.close()


def build_model_client(settings: Settings, tools: ToolRegistry | None = None) -> OpenAIModelClient:
    """The configured client; `tools` defaults to the built-in read-only tools.

    Raises ValueError naming the problem (unknown MODEL_TOOLS entry, missing key).
    """
    return OpenAIModelClient(settings, tools)


__all__ = ["OpenAIModelClient", "build_model_client"]
