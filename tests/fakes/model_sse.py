"""Payload builders for the fake model server: scripts, and the JSON the real APIs send.

Pure functions only (no sockets): chat.completion.chunk dicts, Responses streaming
events, non-streamed objects, usage in each API's shape. The shapes follow OpenAI's
OpenAPI schema; tests/test_model_server_fake.py validates them against it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

MidstreamHow = Literal["error", "failed", "disconnect", "malformed"]


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    call_id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    tool_calls: tuple[ScriptedCall, ...] = ()
    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    usage: dict[str, int] | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Midstream:
    text_before: str
    error_message: str
    how: MidstreamHow = "error"


Script = Reply | Failure | Midstream


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def pieces(text: str) -> list[str]:
    """Split text into small token-like chunks (a word with its trailing space)."""
    return re.findall(r"\S+\s*|\s+", text)


def fragments(text: str, size: int = 8) -> list[str]:
    """Tool-call arguments arrive in short fragments, as the real API sends them."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def scripted_calls(tool_calls: list[dict[str, Any]] | None) -> tuple[ScriptedCall, ...]:
    """Accept {"name": ..., "arguments": dict | str, "id"?: str} as a test writes it."""
    calls = []
    for raw in tool_calls or []:
        args = raw.get("arguments", {})
        text = args if isinstance(args, str) else json.dumps(args)
        calls.append(ScriptedCall(raw.get("id") or new_id("call_"), raw["name"], text))
    return tuple(calls)


def error_body(message: str, *, type_: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def backend_error_body(inner: dict[str, Any], status: int = 400) -> dict[str, Any]:
    """The provider's wrapper around an upstream error (see the GMI docs in the seeds)."""
    return {
        "error": {
            "message": f"Backend request failed with status {status}",
            "type": "backend_error",
            "code": status,
            "details": inner,
        }
    }


# --- reading requests ----------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    """The last user turn's text from either API's request body."""
    items = body.get("messages") if "messages" in body else body.get("input")
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if isinstance(item, dict) and item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def default_usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    """Plausible counts when a test did not script usage: ~4 characters per token."""
    prompt = max(1, len(json.dumps(body.get("messages", body.get("input", "")))) // 4)
    completion = len(pieces(reply.text)) + sum(len(c.arguments) // 4 + 1 for c in reply.tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion}


def chat_usage(usage: dict[str, int]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0),
                                  "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.get("reasoning_tokens", 0),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(usage: dict[str, int]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0),
                                 "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
        "total_tokens": prompt + completion,
    }


# --- Chat Completions ------------------------------------------------------------------


class ChatChunks:
    """Builds chat.completion.chunk dicts sharing one id, as one streamed completion."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.id = new_id("chatcmpl-")
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            body["usage"] = None  # the real API sends null until the final usage chunk
        return body

    def opening(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": "", "refusal": None})

    def text(self, piece: str) -> dict[str, Any]:
        return self.chunk({"content": piece})

    def call_start(self, index: int, call: ScriptedCall) -> dict[str, Any]:
        return self.chunk({"tool_calls": [{
            "index": index, "id": call.call_id, "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]})

    def call_arguments(self, index: int, fragment: str) -> dict[str, Any]:
        return self.chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def finish(self, reason: str) -> dict[str, Any]:
        return self.chunk({}, finish_reason=reason)

    def usage(self, usage: dict[str, int]) -> dict[str, Any]:
        body = self.chunk({})
        body["choices"] = []
        body["usage"] = chat_usage(usage)
        return body


def chat_finish_reason(reply: Reply) -> str:
    if reply.tool_calls and reply.finish_reason == "stop":
        return "tool_calls"
    return reply.finish_reason


def chat_completion(model: str, reply: Reply, usage: dict[str, int]) -> dict[str, Any]:
    """A non-streamed chat.completion object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None,
                               "refusal": None, "annotations": []}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": chat_finish_reason(reply)}],
        "usage": chat_usage(usage),
    }


# --- Responses --------------------------------------------------------------------------


class ResponseEvents:
    """Builds the Responses API's streamed events for one response, numbering them."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.seq = 0
        self.response: dict[str, Any] = {
            "id": new_id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model", ""),
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"},
                     "verbosity": (body.get("text") or {}).get("verbosity", "medium")},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "metadata": {},
        }

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def snapshot(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self.response))  # frozen at this point
        return copy

    def created(self) -> list[dict[str, Any]]:
        return [self.event("response.created", response=self.snapshot()),
                self.event("response.in_progress", response=self.snapshot())]

    # message items
    def message_start(self, output_index: int) -> tuple[str, list[dict[str, Any]]]:
        item_id = new_id("msg_")
        item = {"id": item_id, "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return item_id, [
            self.event("response.output_item.added", output_index=output_index, item=item),
            self.event("response.content_part.added", item_id=item_id,
                       output_index=output_index, content_index=0, part=part),
        ]

    def text_delta(self, item_id: str, output_index: int, piece: str) -> dict[str, Any]:
        return self.event("response.output_text.delta", item_id=item_id,
                          output_index=output_index, content_index=0, delta=piece, logprobs=[])

    def message_done(self, item_id: str, output_index: int, text: str) -> list[dict[str, Any]]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"id": item_id, "type": "message", "status": "completed",
                "role": "assistant", "content": [part]}
        self.response["output"].append(item)
        return [
            self.event("response.output_text.done", item_id=item_id, output_index=output_index,
                       content_index=0, text=text, logprobs=[]),
            self.event("response.content_part.done", item_id=item_id,
                       output_index=output_index, content_index=0, part=part),
            self.event("response.output_item.done", output_index=output_index, item=item),
        ]

    # function_call items
    def call_events(self, output_index: int, call: ScriptedCall) -> list[dict[str, Any]]:
        item_id = new_id("fc_")
        item = {"id": item_id, "type": "function_call", "status": "in_progress",
                "call_id": call.call_id, "name": call.name, "arguments": ""}
        events = [self.event("response.output_item.added", output_index=output_index,
                             item=dict(item))]
        for fragment in fragments(call.arguments):
            events.append(self.event("response.function_call_arguments.delta", item_id=item_id,
                                     output_index=output_index, delta=fragment))
        events.append(self.event("response.function_call_arguments.done", item_id=item_id,
                                 output_index=output_index, name=call.name,
                                 arguments=call.arguments))
        done = {**item, "status": "completed", "arguments": call.arguments}
        self.response["output"].append(done)
        events.append(self.event("response.output_item.done", output_index=output_index,
                                 item=done))
        return events

    def finish(self, reason: str, usage: dict[str, int]) -> dict[str, Any]:
        self.response["usage"] = responses_usage(usage)
        if reason == "length":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
            return self.event("response.incomplete", response=self.snapshot())
        if reason == "content_filter":
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "content_filter"}
            return self.event("response.incomplete", response=self.snapshot())
        self.response["status"] = "completed"
        self.response["completed_at"] = int(time.time())
        return self.event("response.completed", response=self.snapshot())

    def error(self, message: str) -> dict[str, Any]:
        return self.event("error", code="server_error", message=message, param=None)

    def failed(self, message: str) -> dict[str, Any]:
        self.response["status"] = "failed"
        self.response["error"] = {"code": "server_error", "message": message}
        return self.event("response.failed", response=self.snapshot())


def response_object(body: dict[str, Any], reply: Reply, usage: dict[str, int]) -> dict[str, Any]:
    """A non-streamed response object (the same builder, events discarded)."""
    events = ResponseEvents(body)
    index = 0
    if reply.text:
        item_id, _ = events.message_start(index)
        events.message_done(item_id, index, reply.text)
        index += 1
    for call in reply.tool_calls:
        events.call_events(index, call)
        index += 1
    final: dict[str, Any] = events.finish(reply.finish_reason, usage)["response"]
    return final


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event; the Responses API names each event, Chat does not."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()
