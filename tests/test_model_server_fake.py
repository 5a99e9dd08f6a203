"""The fake model server speaks the real wire format: checked against OpenAI's schema and SDK."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseTextDeltaEvent,
)

from tests.fakes.model_server import FakeModelServer
from tests.fakes.openai_schema import (
    CHAT_CHUNK,
    CHAT_COMPLETION,
    MODELS_LIST,
    RESPONSE_OBJECT,
    RESPONSES_EVENT,
    violations,
)

AUTH = {"Authorization": "Bearer test-key"}
CHAT_BODY: dict[str, Any] = {
    "model": "openai/gpt-5.4-mini",
    "messages": [{"role": "user", "content": "hello there"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
RESPONSES_BODY: dict[str, Any] = {
    "model": "openai/gpt-5.4-mini",
    "input": [{"role": "user", "content": "hello there"}],
    "stream": True,
}


async def raw_events(url: str, body: dict[str, Any]) -> tuple[int, list[tuple[str | None, str]]]:
    """POST and split the SSE body into (event name, data) pairs, as a client sees them."""
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=AUTH) as resp:
        text = (await resp.read()).decode()
    events: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        events.append((name, "\n".join(data)))
    return resp.status, events


def sdk(server: FakeModelServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)


async def test_chat_stream_chunks_match_the_schema_and_end_with_done(
    model_server: FakeModelServer,
) -> None:
    model_server.reply("Hi there, friend.", usage={"prompt_tokens": 12, "completion_tokens": 4})
    status, events = await raw_events(model_server.base_url + "chat/completions", CHAT_BODY)

    assert status == 200
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    for chunk in chunks:
        assert violations(CHAT_CHUNK, chunk) == []
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hi there, friend."
    assert chunks[-1]["choices"] == []  # include_usage: a final usage-only chunk
    assert chunks[-1]["usage"]["prompt_tokens"] == 12
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_chat_tool_call_deltas_carry_id_and_name_first_then_argument_fragments(
    model_server: FakeModelServer,
) -> None:
    model_server.reply("", tool_calls=[{"id": "call_1", "name": "current_time",
                                        "arguments": {"timezone": "Europe/Paris"}}])
    _, events = await raw_events(model_server.base_url + "chat/completions", CHAT_BODY)

    deltas = [json.loads(d)["choices"][0]["delta"] for _, d in events[:-1]
              if json.loads(d)["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] == "call_1" and calls[0]["function"]["name"] == "current_time"
    assert all("id" not in c and "name" not in c["function"] for c in calls[1:])
    assert len(calls) > 2  # arguments arrive in several fragments
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"timezone": "Europe/Paris"}
    finish = [json.loads(d)["choices"][0]["finish_reason"] for _, d in events[:-1]
              if json.loads(d)["choices"]]
    assert finish[-1] == "tool_calls"


async def test_responses_stream_has_the_full_event_sequence_matching_the_schema(
    model_server: FakeModelServer,
) -> None:
    model_server.reply("Hello you", tool_calls=[{"name": "calculator",
                                                 "arguments": {"expression": "1+1"}}])
    status, events = await raw_events(model_server.base_url + "responses", RESPONSES_BODY)

    assert status == 200
    payloads = [json.loads(data) for _, data in events]
    for (name, _), payload in zip(events, payloads, strict=True):
        assert name == payload["type"]
        assert violations(RESPONSES_EVENT, payload) == []
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    kinds = [p["type"] for p in payloads]
    assert kinds == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * (kinds.count(
            "response.function_call_arguments.delta")),
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.function_call_arguments.delta") >= 2
    completed = payloads[-1]["response"]
    assert [item["type"] for item in completed["output"]] == ["message", "function_call"]
    assert completed["usage"]["input_tokens"] > 0


async def test_the_sdk_parses_every_event_into_its_own_type(model_server: FakeModelServer) -> None:
    model_server.reply("a b", tool_calls=[{"name": "calculator", "arguments": {"expression": "2"}}])
    client = sdk(model_server)
    stream = await client.responses.create(model="m", input="hi", stream=True)
    events = [event async for event in stream]
    await client.close()

    text = [e for e in events if e.type == "response.output_text.delta"]
    args = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert all(isinstance(e, ResponseTextDeltaEvent) for e in text)
    assert all(isinstance(e, ResponseFunctionCallArgumentsDeltaEvent) for e in args)
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert events[-1].response.output_text == "a b"


async def test_non_streaming_objects_match_the_schema(model_server: FakeModelServer) -> None:
    model_server.reply("whole answer")
    model_server.reply("whole answer", tool_calls=[{"name": "calculator", "arguments": "{}"}])
    async with aiohttp.ClientSession() as http:
        async with http.post(model_server.base_url + "chat/completions",
                             json={**CHAT_BODY, "stream": False, "stream_options": None},
                             headers=AUTH) as resp:
            chat = await resp.json()
        async with http.post(model_server.base_url + "responses",
                             json={**RESPONSES_BODY, "stream": False}, headers=AUTH) as resp:
            response = await resp.json()
        async with http.get(model_server.base_url + "models", headers=AUTH) as resp:
            models = await resp.json()

    assert violations(CHAT_COMPLETION, chat) == []
    assert chat["choices"][0]["message"]["content"] == "whole answer"
    assert violations(RESPONSE_OBJECT, response) == []
    assert response["output"][0]["content"][0]["text"] == "whole answer"
    assert response["output"][1]["type"] == "function_call"
    assert violations(MODELS_LIST, models) == []
    assert [m["id"] for m in models["data"]] == ["openai/gpt-5.4-mini"]


async def test_scripts_apply_to_whichever_api_is_called_and_echo_is_the_default(
    model_server: FakeModelServer,
) -> None:
    model_server.reply("first")
    client = sdk(model_server)
    first = await client.responses.create(model="m", input="x")
    second = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "say it back"}])
    await client.close()

    assert first.output_text == "first"
    assert second.choices[0].message.content == "echo: say it back"
    assert [r.path for r in model_server.requests] == ["/v1/responses", "/v1/chat/completions"]
    assert model_server.requests[1].headers["authorization"] == "Bearer test-key"
    assert model_server.requests[1].body["messages"][0]["content"] == "say it back"


async def test_a_schema_violation_is_recorded_and_answered_400(
    model_server: FakeModelServer,
) -> None:
    bad = {"model": "m", "messages": [{"role": "robot", "content": "hi"}]}
    async with aiohttp.ClientSession() as http, http.post(
        model_server.base_url + "chat/completions", json=bad, headers=AUTH
    ) as resp:
        status, body = resp.status, await resp.json()

    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "robot" in body["error"]["message"]
    assert len(model_server.schema_errors) == 1
    assert "messages/0/role" in model_server.schema_errors[0]
    model_server.schema_errors.clear()  # expected here; the fixture fails on leftovers


async def test_max_tokens_gets_the_providers_wrapped_backend_error(
    model_server: FakeModelServer,
) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        model_server.base_url + "chat/completions",
        json={**CHAT_BODY, "max_tokens": 50}, headers=AUTH,
    ) as resp:
        status, body = resp.status, await resp.json()

    assert status == 400
    assert body["error"]["type"] == "backend_error"
    assert body["error"]["message"] == "Backend request failed with status 400"
    inner = body["error"]["details"]["error"]
    assert inner["param"] == "max_tokens" and inner["code"] == "unsupported_parameter"
    assert inner["message"].startswith("Unsupported parameter: 'max_tokens'")
    assert model_server.schema_errors
    model_server.schema_errors.clear()


async def test_requests_without_a_bearer_token_get_401(model_server: FakeModelServer) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        model_server.base_url + "responses", json=RESPONSES_BODY
    ) as resp:
        status, body = resp.status, await resp.json()
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"


async def test_scripted_failure_returns_its_status_body_and_headers(
    model_server: FakeModelServer,
) -> None:
    model_server.fail(429, headers={"Retry-After": "7"})
    async with aiohttp.ClientSession() as http, http.post(
        model_server.base_url + "chat/completions", json=CHAT_BODY, headers=AUTH
    ) as resp:
        status, body, retry_after = resp.status, await resp.json(), resp.headers["Retry-After"]
    assert (status, retry_after) == (429, "7")
    assert body["error"]["code"] == "rate_limit_exceeded"


async def test_midstream_failures_send_text_then_the_error_in_each_apis_shape(
    model_server: FakeModelServer,
) -> None:
    model_server.fail_midstream("partial answer", error_message="boom")
    _, chat = await raw_events(model_server.base_url + "chat/completions", CHAT_BODY)
    model_server.fail_midstream("partial answer", error_message="boom")
    _, resp_error = await raw_events(model_server.base_url + "responses", RESPONSES_BODY)
    model_server.fail_midstream("partial answer", error_message="boom", how="failed")
    _, resp_failed = await raw_events(model_server.base_url + "responses", RESPONSES_BODY)

    chat_payloads = [json.loads(d) for _, d in chat]
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in chat_payloads[:-1]) \
        == "partial answer"
    assert chat_payloads[-1] == {"error": {"message": "boom", "type": "server_error",
                                           "param": None, "code": None}}
    last = json.loads(resp_error[-1][1])
    assert resp_error[-1][0] == "error" and last["message"] == "boom"
    assert violations(RESPONSES_EVENT, last) == []
    failed = json.loads(resp_failed[-1][1])
    assert failed["type"] == "response.failed" and failed["response"]["error"]["message"] == "boom"
    assert violations(RESPONSES_EVENT, failed) == []


async def test_ttft_delays_the_first_token(model_server: FakeModelServer) -> None:
    model_server.reply("slow start", ttft_s=0.2)
    client = sdk(model_server)
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    first_text_at = None
    async for chunk in stream:
        assert isinstance(chunk, ChatCompletionChunk)
        if chunk.choices and chunk.choices[0].delta.content and first_text_at is None:
            first_text_at = time.monotonic()
    await client.close()
    assert first_text_at is not None and first_text_at - started >= 0.2


async def test_standalone_server_prints_ready_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.model_server", "--port", "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert line.startswith("READY http://127.0.0.1:")
        base_url = line.split(" ", 1)[1]
        assert base_url.endswith("/v1/")
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "ping"}])
        await client.close()
        assert reply.choices[0].message.content == "echo: ping"
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize("path", ["chat/completions", "responses"])
async def test_unparseable_json_gets_400(model_server: FakeModelServer, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        model_server.base_url + path, data=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert "parse" in (await resp.json())["error"]["message"]
