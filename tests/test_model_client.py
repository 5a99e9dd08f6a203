"""OpenAIModelClient through the real openai SDK against the fake server over a socket."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.model import FunctionTool, OpenAIModelClient, ToolRegistry, build_model_client
from core.model.builtin_tools import builtin_registry, evaluate
from core.model.types import (
    FilePart,
    Finished,
    ImagePart,
    ModelError,
    ModelEvent,
    ModelMessage,
    ModelRequest,
    TextDelta,
    TextPart,
    ToolRound,
    UsageReport,
)
from core.settings import Settings
from core.types import ToolExchange, Usage
from tests.fakes.model_server import FakeModelServer

APIS = pytest.mark.parametrize("api", ["chat", "responses"])
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
BACKEND_400 = {
    "error": {
        "message": "Backend request failed with status 400",
        "type": "backend_error",
        "code": 400,
        "details": {"error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                       "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens",
            "code": "unsupported_parameter",
        }},
    }
}


def settings_for(base_url: str, api: str = "chat", **env: Any) -> Settings:
    values: dict[str, Any] = {"_env_file": None, "MODEL_BASE_URL": base_url,
                              "MODEL_API_KEY": "test-key", "MODEL_API": api, **env}
    return Settings(**values)


def ask(text: str, *history: ModelMessage, **fields: Any) -> ModelRequest:
    messages = (*history, ModelMessage("user", (TextPart(text),)))
    return ModelRequest(instructions="Be brief.", messages=messages, **fields)


@pytest.fixture
async def client_factory(model_server: FakeModelServer) -> AsyncIterator[Any]:
    made: list[OpenAIModelClient] = []

    def make(api: str = "chat", **env: Any) -> OpenAIModelClient:
        client = build_model_client(settings_for(model_server.base_url, api, **env))
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


async def collect(client: OpenAIModelClient, request: ModelRequest) -> list[ModelEvent]:
    return [event async for event in client.stream(request)]


async def collect_until_error(
    client: OpenAIModelClient, request: ModelRequest
) -> tuple[list[ModelEvent], ModelError]:
    events: list[ModelEvent] = []
    with pytest.raises(ModelError) as caught:
        async for event in client.stream(request):
            events.append(event)
    return events, caught.value


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- streaming and request mapping -----------------------------------------------------------


@APIS
async def test_streams_text_then_usage_then_finished(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    client = client_factory(api)
    events = await collect(client, ask("hello world"))

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1  # it arrived in pieces, not as one block
    assert text_of(events) == "echo: hello world"
    assert isinstance(events[-2], UsageReport) and events[-2].usage.completion_tokens > 0
    assert events[-1] == Finished("stop")
    body = model_server.requests[0].body
    assert body["stream"] is True and body["model"] == "openai/gpt-5.4-mini"
    if api == "chat":
        assert model_server.requests[0].path == "/v1/chat/completions"
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert model_server.requests[0].path == "/v1/responses"
        assert body["instructions"] == "Be brief."
        assert body["input"] == [{"role": "user", "content": "hello world"}]


@APIS
async def test_images_and_pdfs_arrive_as_data_urls_in_each_apis_shape(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    client = client_factory(api, MODEL_IMAGE_DETAIL="low")
    parts = (TextPart("what is this?"), ImagePart(PNG, "image/png", "high"),
             ImagePart(PNG, "image/png"), FilePart(PDF, "application/pdf", "report.pdf"))
    request = ModelRequest("Be brief.", (ModelMessage("user", parts),))
    await collect(client, request)

    body = model_server.requests[0].body
    png_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    pdf_url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    if api == "chat":
        content = body["messages"][1]["content"]
        assert content == [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": png_url, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": png_url, "detail": "low"}},
            {"type": "file", "file": {"filename": "report.pdf", "file_data": pdf_url}},
        ]
    else:
        content = body["input"][0]["content"]
        assert content == [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": png_url, "detail": "high"},
            {"type": "input_image", "image_url": png_url, "detail": "low"},
            {"type": "input_file", "filename": "report.pdf", "file_data": pdf_url},
        ]


@APIS
async def test_reasoning_verbosity_and_output_cap_use_each_apis_names(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    client = client_factory(api, MODEL_REASONING_EFFORT="low", MODEL_VERBOSITY="high",
                            MODEL_MAX_COMPLETION_TOKENS="900")
    await collect(client, ask("one"))
    await collect(client, ask("two", max_output_tokens=64))

    first, second = (r.body for r in model_server.requests)
    for body in (first, second):
        assert "max_tokens" not in body
        assert "temperature" not in body and "top_p" not in body
    if api == "chat":
        assert first["reasoning_effort"] == "low" and first["verbosity"] == "high"
        assert first["max_completion_tokens"] == 900
        assert second["max_completion_tokens"] == 64
    else:
        assert first["reasoning"] == {"effort": "low"} and first["text"] == {"verbosity": "high"}
        assert first["max_output_tokens"] == 900
        assert second["max_output_tokens"] == 64
        assert "reasoning_effort" not in first and "verbosity" not in first


async def test_responses_output_cap_never_goes_below_the_apis_minimum(
    model_server: FakeModelServer, client_factory: Any
) -> None:
    await collect(client_factory("responses"), ask("ping", max_output_tokens=1))
    assert model_server.requests[0].body["max_output_tokens"] == 16


@APIS
async def test_sampling_extra_body_and_cache_key_are_sent_when_set(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    client = client_factory(api, MODEL_TEMPERATURE="0.3", MODEL_TOP_P="0.9",
                            MODEL_EXTRA_BODY='{"top_k": 40}')
    await collect(client, ask("hi", cache_key="slack:T1:C1:123.456"))

    body = model_server.requests[0].body
    assert body["top_k"] == 40  # merged at the top level, as the provider expects
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["prompt_cache_key"] == "slack:T1:C1:123.456"


@APIS
async def test_a_provider_that_rejects_prompt_cache_key_is_retried_without_it(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    model_server.fail(400, {"error": {
        "message": "Unrecognized request argument supplied: prompt_cache_key",
        "type": "invalid_request_error", "param": "prompt_cache_key", "code": None}})
    model_server.reply("Fine without it.")
    model_server.reply("Still fine.")
    client = client_factory(api)
    assert text_of(await collect(client, ask("hi", cache_key="tw:a"))) == "Fine without it."
    assert text_of(await collect(client, ask("again", cache_key="tw:a"))) == "Still fine."
    sent = [r.body for r in model_server.requests]
    assert "prompt_cache_key" in sent[0]
    assert all("prompt_cache_key" not in body for body in sent[1:]), "remembered, not re-sent"


@APIS
async def test_history_with_tool_exchanges_puts_calls_right_before_the_answer(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    exchange = ToolExchange("call_7", "current_time", '{"timezone": null}', "2026-01-01T00:00:00")
    history = (ModelMessage("user", (TextPart("what time is it?"),)),
               ModelMessage("assistant", (TextPart("Midnight."),), tools=(exchange,)))
    await collect(client_factory(api), ask("thanks", *history))

    body = model_server.requests[0].body
    if api == "chat":
        assert body["messages"][1:] == [
            {"role": "user", "content": "what time is it?"},
            {"role": "assistant", "tool_calls": [{"id": "call_7", "type": "function", "function": {
                "name": "current_time", "arguments": '{"timezone": null}'}}]},
            {"role": "tool", "tool_call_id": "call_7", "content": "2026-01-01T00:00:00"},
            {"role": "assistant", "content": "Midnight."},
            {"role": "user", "content": "thanks"},
        ]
    else:
        assert body["input"] == [
            {"role": "user", "content": "what time is it?"},
            {"type": "function_call", "call_id": "call_7", "name": "current_time",
             "arguments": '{"timezone": null}'},
            {"type": "function_call_output", "call_id": "call_7",
             "output": "2026-01-01T00:00:00"},
            {"role": "assistant", "content": "Midnight."},
            {"role": "user", "content": "thanks"},
        ]


# --- tools ----------------------------------------------------------------------------------


@APIS
async def test_tool_call_round_trip(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    model_server.reply("", tool_calls=[{"id": "call_abc", "name": "current_time",
                                        "arguments": {"timezone": "Europe/Paris"}}])
    model_server.reply("It is evening in Paris.")
    client = client_factory(api, MODEL_TOOLS="current_time")
    events = await collect(client, ask("what time is it in Paris?"))

    rounds = [e for e in events if isinstance(e, ToolRound)]
    assert len(rounds) == 1
    (exchange,) = rounds[0].exchanges
    assert (exchange.call_id, exchange.name) == ("call_abc", "current_time")
    assert json.loads(exchange.arguments) == {"timezone": "Europe/Paris"}
    assert "Europe/Paris" in exchange.output and "20" in exchange.output[:4]
    assert text_of(events) == "It is evening in Paris."
    assert events[-1] == Finished("stop")

    first, second = (r.body for r in model_server.requests)
    if api == "chat":
        assert first["tools"][0]["function"]["name"] == "current_time"
        assert second["messages"][-2]["tool_calls"][0]["id"] == "call_abc"
        assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_abc",
                                          "content": exchange.output}
    else:
        assert first["tools"][0]["name"] == "current_time"
        assert second["input"][-2]["type"] == "function_call"
        assert second["input"][-2]["call_id"] == "call_abc"
        assert second["input"][-1] == {"type": "function_call_output", "call_id": "call_abc",
                                       "output": exchange.output}


@APIS
async def test_tool_loop_stops_after_max_rounds(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    for _ in range(3):
        model_server.reply("", tool_calls=[{"name": "calculator",
                                            "arguments": {"expression": "6*7"}}])
    client = client_factory(api, MODEL_TOOLS="calculator", MAX_TOOL_ROUNDS="2")
    events = await collect(client, ask("keep calculating"))

    assert len(model_server.requests) == 3
    rounds = [e for e in events if isinstance(e, ToolRound)]
    assert [r.exchanges[0].output for r in rounds] == ["42", "42"]
    assert "too many tool calls" in text_of(events)
    assert events[-1] == Finished("tool_rounds_exhausted")


@APIS
async def test_a_failing_tool_becomes_an_error_output_not_a_failed_turn(
    model_server: FakeModelServer, api: str
) -> None:
    async def broken(args: dict[str, Any]) -> str:
        raise RuntimeError("inventory database is down")

    registry = ToolRegistry([FunctionTool("inventory", "Look up stock.",
                                          {"type": "object", "properties": {},
                                           "required": [], "additionalProperties": False},
                                          broken)])
    model_server.reply("", tool_calls=[{"name": "inventory", "arguments": {}},
                                       {"name": "not_offered", "arguments": {}}])
    model_server.reply("Sorry, I could not check.")
    client = build_model_client(
        settings_for(model_server.base_url, api, MODEL_TOOLS="inventory"), registry)
    try:
        events = await collect(client, ask("do we have any?"))
    finally:
        await client.aclose()

    (round_,) = [e for e in events if isinstance(e, ToolRound)]
    outputs = [ex.output for ex in round_.exchanges]
    assert outputs == ["error: inventory database is down", "error: unknown tool 'not_offered'"]
    assert text_of(events) == "Sorry, I could not check."
    assert "inventory database is down" in json.dumps(model_server.requests[1].body)


async def test_tools_are_not_offered_when_the_request_disables_them(
    model_server: FakeModelServer, client_factory: Any
) -> None:
    client = client_factory("chat", MODEL_TOOLS="current_time,calculator")
    await collect(client, ask("summarize", tools_enabled=False))
    await collect(client, ask("chat"))
    assert "tools" not in model_server.requests[0].body
    names = [t["function"]["name"] for t in model_server.requests[1].body["tools"]]
    assert names == ["current_time", "calculator"]


async def test_web_search_is_the_hosted_tool_on_responses_and_ignored_on_chat(
    model_server: FakeModelServer, client_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await collect(client_factory("responses", MODEL_TOOLS="web_search"), ask("news?"))
    with caplog.at_level(logging.WARNING):
        await collect(client_factory("chat", MODEL_TOOLS="web_search"), ask("news?"))

    assert model_server.requests[0].body["tools"] == [{"type": "web_search_preview"}]
    assert "tools" not in model_server.requests[1].body
    assert "web_search" in caplog.text and "responses" in caplog.text


def test_an_unknown_tool_name_is_a_clear_config_error() -> None:
    with pytest.raises(ValueError, match="'weather'"):
        build_model_client(settings_for("http://127.0.0.1:9/v1/", MODEL_TOOLS="weather"))


def test_calculator_is_exact_and_refuses_code() -> None:
    assert evaluate("(17.5 * 3) / 4") == 13.125
    assert evaluate("2 ^ 10 + sqrt(16)") == 1028.0
    assert evaluate("10 // 3 + 10 % 3") == 4
    for bad in ("__import__('os').system('id')", "9 ** 9 ** 9", "1 / 0", "x + 1", "[1, 2]"):
        with pytest.raises(ValueError):
            evaluate(bad)


async def test_current_time_rejects_an_unknown_zone() -> None:
    tool = builtin_registry().get("current_time")
    assert tool is not None
    assert "UTC" in await tool.handler({"timezone": None})
    with pytest.raises(ValueError, match="Mars/Olympus"):
        await tool.handler({"timezone": "Mars/Olympus"})


# --- usage -----------------------------------------------------------------------------------


@APIS
async def test_usage_with_cached_and_reasoning_tokens_is_summed_across_rounds(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 64,
             "reasoning_tokens": 5}
    model_server.reply("", tool_calls=[{"name": "calculator", "arguments": {"expression": "1"}}],
                       usage=usage)
    model_server.reply("done", usage=usage)
    events = await collect(client_factory(api, MODEL_TOOLS="calculator"), ask("sum"))

    reports = [e for e in events if isinstance(e, UsageReport)]
    assert reports == [UsageReport(Usage(200, 20, 128, 10))]
    assert events[-2] == reports[0]


# --- errors ----------------------------------------------------------------------------------


@APIS
async def test_a_wrapped_backend_error_shows_its_inner_reason(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    model_server.fail(400, BACKEND_400)
    events, error = await collect_until_error(client_factory(api), ask("hi"))

    assert events == []
    assert error.status == 400 and not error.retryable
    assert "Unsupported parameter: 'max_tokens'" in error.reason
    assert "Backend request failed" not in error.reason
    assert "test-key" not in error.reason


async def test_429_with_retry_after_is_retried_and_then_succeeds(
    model_server: FakeModelServer, client_factory: Any
) -> None:
    model_server.fail(429, headers={"Retry-After": "0.05"})
    events = await collect(client_factory("chat", MODEL_MAX_RETRIES="2"), ask("again"))

    assert len(model_server.requests) == 2
    assert text_of(events) == "echo: again"


@APIS
async def test_5xx_until_retries_run_out_is_a_retryable_model_error(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    for _ in range(2):
        model_server.fail(503, headers={"Retry-After": "0.01"})
    _, error = await collect_until_error(client_factory(api, MODEL_MAX_RETRIES="1"), ask("x"))

    assert len(model_server.requests) == 2
    assert error.status == 503 and error.retryable
    assert "503" in error.reason and "overloaded" in error.reason


@pytest.mark.parametrize(("api", "how"), [("chat", "error"), ("responses", "error"),
                                          ("responses", "failed"), ("chat", "disconnect")])
async def test_a_stream_that_fails_midway_yields_text_then_model_error(
    model_server: FakeModelServer, client_factory: Any, api: str, how: str
) -> None:
    model_server.fail_midstream("The first half", error_message="upstream connection lost",
                                how=how)  # type: ignore[arg-type]
    events, error = await collect_until_error(client_factory(api), ask("long answer"))

    assert text_of(events) == "The first half"
    assert error.retryable
    if how == "disconnect":
        assert "lost the connection to the model provider at 127.0.0.1" in error.reason
    else:
        assert "upstream connection lost" in error.reason
    assert len(model_server.requests) == 1  # only the opening request is ever retried


@APIS
async def test_malformed_sse_is_a_model_error(
    model_server: FakeModelServer, client_factory: Any, api: str
) -> None:
    model_server.fail_midstream("Some text", how="malformed")
    events, error = await collect_until_error(client_factory(api), ask("x"))
    assert text_of(events) == "Some text"
    assert "malformed" in error.reason


async def test_connection_refused_names_the_host() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = build_model_client(settings_for(f"http://127.0.0.1:{port}/v1/",
                                             MODEL_MAX_RETRIES="0"))
    try:
        _, error = await collect_until_error(client, ask("anyone there?"))
    finally:
        await client.aclose()
    assert error.reason == f"could not reach the model provider at 127.0.0.1:{port}"
    assert error.retryable and error.status is None


async def test_list_models_for_check(model_server: FakeModelServer, client_factory: Any) -> None:
    assert await client_factory().list_models() == ["openai/gpt-5.4-mini"]
    model_server.fail(401)
    with pytest.raises(ModelError, match="API key"):
        await client_factory().list_models()
