"""Function tools the model may call: a small registry and a safe runner.

Tools are read-only helpers (no side effects, no network), offered only when named
in MODEL_TOOLS. A tool that fails never fails the turn: its error becomes the tool
output, and the model can explain it to the user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.types import ToolExchange

log = logging.getLogger(__name__)

ToolHandler = Callable[[dict[str, Any]], Awaitable[str]]

# Tools the provider runs itself; named in MODEL_TOOLS like ours but not in the registry.
HOSTED_TOOLS = frozenset({"web_search"})

TOOL_TIMEOUT_S = 20.0
MAX_OUTPUT_CHARS = 16_000  # keep one runaway tool result from eating the context


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema for the arguments object
    handler: ToolHandler
    # Strict schemas (every property required, no extras) let the provider guarantee
    # well-formed arguments; the Responses API assumes strict unless told otherwise.
    strict: bool = True


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A function call the model asked for, assembled from streamed fragments."""

    call_id: str
    name: str
    arguments: str


class ToolRegistry:
    """Named function tools; the configuration picks which of them the model sees."""

    def __init__(self, tools: Iterable[FunctionTool] = ()) -> None:
        self._tools: dict[str, FunctionTool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: FunctionTool) -> None:
        if tool.name in self._tools or tool.name in HOSTED_TOOLS:
            raise ValueError(f"tool {tool.name!r} is already defined")
        self._tools[tool.name] = tool

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tools))

    def get(self, name: str) -> FunctionTool | None:
        return self._tools.get(name)

    def select(self, names: Iterable[str]) -> tuple[list[FunctionTool], list[str]]:
        """(function tools, hosted tool names) for MODEL_TOOLS; unknown names raise."""
        functions: list[FunctionTool] = []
        hosted: list[str] = []
        for name in dict.fromkeys(n.strip() for n in names if n.strip()):
            if name in HOSTED_TOOLS:
                hosted.append(name)
            elif name in self._tools:
                functions.append(self._tools[name])
            else:
                known = ", ".join([*self.names(), *sorted(HOSTED_TOOLS)])
                raise ValueError(f"MODEL_TOOLS names an unknown tool {name!r} (known: {known})")
        return functions, hosted


async def _run_one(tools: Mapping[str, FunctionTool], call: PendingCall) -> ToolExchange:
    started = time.monotonic()
    output = await _output(tools.get(call.name), call)
    log.info("tool %s ran in %.0f ms", call.name, (time.monotonic() - started) * 1000)
    if len(output) > MAX_OUTPUT_CHARS:
        output = output[:MAX_OUTPUT_CHARS] + "\n[output truncated]"
    return ToolExchange(call.call_id, call.name, call.arguments, output)


async def _output(tool: FunctionTool | None, call: PendingCall) -> str:
    if tool is None:
        return f"error: unknown tool {call.name!r}"
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        return "error: the arguments were not valid JSON"
    if not isinstance(args, dict):
        return "error: the arguments must be a JSON object"
    try:
        return await asyncio.wait_for(tool.handler(args), TOOL_TIMEOUT_S)
    except TimeoutError:
        return f"error: the tool took longer than {TOOL_TIMEOUT_S:.0f} s"
    except Exception as exc:  # a tool bug must not end the user's turn
        log.warning("tool %s failed: %s", call.name, type(exc).__name__)
        return f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}"


async def run_calls(
    tools: Mapping[str, FunctionTool], calls: Sequence[PendingCall]
) -> tuple[ToolExchange, ...]:
    """Run one round of calls concurrently (they are read-only), keeping their order."""
    return tuple(await asyncio.gather(*(_run_one(tools, call) for call in calls)))
