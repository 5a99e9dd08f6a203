"""A fake OpenAI-compatible model server: Chat Completions and Responses over real HTTP.

Tests point the real openai SDK at it (Settings.MODEL_BASE_URL = server.base_url).
Every request is recorded and validated against OpenAI's own schema; replies are
scripted per request (whichever API is called) or, with an empty queue, echo the
last user text. Streams are byte-for-byte in the shapes the real API sends.

    python -m tests.fakes.model_server --port 0      # prints "READY <base_url>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tests.fakes import model_sse as sse_
from tests.fakes.model_sse import Failure, Midstream, MidstreamHow, Reply, Script
from tests.fakes.openai_schema import CHAT_REQUEST, RESPONSES_REQUEST, violations

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
MODELS_PATH = "/v1/models"

_DEFAULT_FAILURES: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.",
          "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests. Please try again shortly.",
          "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]  # lower-cased names


@dataclass
class FakeModelServer:
    """Scriptable OpenAI-compatible server on 127.0.0.1 (see the shared fixture contract)."""

    host: str = "127.0.0.1"
    port: int = 0
    models: list[str] = field(default_factory=lambda: ["openai/gpt-5.4-mini"])
    api_key: str | None = None  # when set, other bearer tokens get a 401
    # Pacing of the default echo reply (benchmarks against the standalone server).
    echo_ttft_s: float = 0.0
    echo_tokens_per_s: float | None = None
    requests: list[RecordedRequest] = field(default_factory=list, repr=False)
    schema_errors: list[str] = field(default_factory=list)
    abandoned_streams: int = 0  # streams the client closed before their end
    _scripts: deque[Script] = field(default_factory=deque, repr=False)
    # With an empty queue: build the reply text from the request body (None = echo).
    responder: Callable[[dict[str, Any]], str] | None = field(default=None, repr=False)
    _runner: web.AppRunner | None = field(default=None, repr=False)

    # --- scripting --------------------------------------------------------------------

    def reply(self, text: str, *, tool_calls: list[dict[str, Any]] | None = None,
              ttft_s: float = 0.0, tokens_per_s: float | None = None,
              usage: dict[str, int] | None = None, finish_reason: str = "stop") -> None:
        """Queue one reply. tool_calls: [{"name", "arguments": dict | str, "id"?}].

        usage uses neutral keys: prompt_tokens, completion_tokens, cached_tokens,
        reasoning_tokens; each API gets them in its own shape.
        """
        self._scripts.append(Reply(text, sse_.scripted_calls(tool_calls), ttft_s,
                                   tokens_per_s, usage, finish_reason))

    def respond_with(self, responder: Callable[[dict[str, Any]], str] | None) -> None:
        """Answer every request the queue does not script with responder(body) (None: echo).

        For tests whose replies depend on what was asked (e.g. which messages a summary
        call saw); scripted replies still come first.
        """
        self.responder = responder

    def fail(self, status: int, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> None:
        """Queue one error answer for the next request (GET /v1/models included)."""
        if body is None:
            message, type_, code = _DEFAULT_FAILURES.get(
                status, (f"Request failed with status {status}.", "server_error", None))
            body = sse_.error_body(message, type_=type_, code=code)
        self._scripts.append(Failure(status, body, dict(headers or {})))

    def fail_midstream(self, text_before: str, *, error_message: str = "upstream connection lost",
                       how: MidstreamHow = "error") -> None:
        """Queue a stream that sends text_before and then fails.

        how: "error" (an error event: Chat `data: {"error": ...}`, Responses `error`),
        "failed" (Responses `response.failed`; same as "error" on Chat),
        "disconnect" (the connection drops), "malformed" (an undecodable JSON event).
        """
        self._scripts.append(Midstream(text_before, error_message, how))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/"

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> FakeModelServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(RESPONSES_PATH, self._responses)
        app.router.add_get(MODELS_PATH, self._models)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeModelServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- request handling ---------------------------------------------------------------

    async def _record(
        self, request: web.Request
    ) -> tuple[dict[str, Any] | None, web.Response | None]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw = await request.read() if request.can_read_body else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(request.method, request.path,
                                             body if isinstance(body, dict) else {}, headers))
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not token or (self.api_key is not None and token != self.api_key):
            message, type_, code = _DEFAULT_FAILURES[401]
            return None, web.json_response(sse_.error_body(message, type_=type_, code=code),
                                           status=401)
        if request.method == "POST" and not isinstance(body, dict):
            return None, web.json_response(sse_.error_body(
                "We could not parse the JSON body of your request."), status=400)
        return body if isinstance(body, dict) else {}, None

    def _check_body(self, path: str, schema: str, body: dict[str, Any]) -> web.Response | None:
        if "max_tokens" in body:
            # The provider rejects max_tokens for these models; our client must never send it.
            self.schema_errors.append(f"{path}: max_tokens sent (use max_completion_tokens)")
            inner = sse_.error_body(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens", code="unsupported_parameter")
            return web.json_response(sse_.backend_error_body(inner), status=400)
        problems = violations(schema, body)
        if not problems:
            return None
        self.schema_errors.extend(f"{path}: {p}" for p in problems)
        param = problems[0].split(":", 1)[0]
        return web.json_response(sse_.error_body(
            f"Invalid request body: {problems[0]}", param=param, code="invalid_value"), status=400)

    def _next_script(self, body: dict[str, Any]) -> Script:
        if self._scripts:
            return self._scripts.popleft()
        if self.responder is not None:
            return Reply(self.responder(body))
        return Reply("echo: " + sse_.last_user_text(body), ttft_s=self.echo_ttft_s,
                     tokens_per_s=self.echo_tokens_per_s)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, CHAT_PATH, CHAT_REQUEST, _ChatWriter)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, RESPONSES_PATH, RESPONSES_REQUEST, _ResponsesWriter)

    async def _serve(self, request: web.Request, path: str, schema: str,
                     writer_cls: type[_ChatWriter] | type[_ResponsesWriter]) -> web.StreamResponse:
        body, refusal = await self._record(request)
        if refusal is not None or body is None:
            return refusal or web.Response(status=400)
        rejected = self._check_body(path, schema, body)
        if rejected is not None:
            return rejected
        script = self._next_script(body)
        if isinstance(script, Failure):
            return web.json_response(script.body, status=script.status, headers=script.headers)
        writer = writer_cls(body)
        if not body.get("stream"):
            if isinstance(script, Midstream):
                return web.json_response(sse_.error_body(script.error_message,
                                                         type_="server_error"), status=500)
            return web.json_response(writer.whole(script))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            if isinstance(script, Reply):
                await _write_all(response, writer.stream(script), script)
                await response.write_eof()
            else:
                await _write_all(response, writer.before_failure(script), Reply(""))
                await _fail_stream(request, response, writer, script)
        except ConnectionError:
            self.abandoned_streams += 1  # the client went away mid-stream
        return response

    async def _models(self, request: web.Request) -> web.Response:
        _, refusal = await self._record(request)
        if refusal is not None:
            return refusal
        if self._scripts and isinstance(self._scripts[0], Failure):
            failure = self._scripts.popleft()  # a queued failure hits whatever comes next
            assert isinstance(failure, Failure)
            return web.json_response(failure.body, status=failure.status, headers=failure.headers)
        created = int(time.time())
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "fake"}
            for m in self.models]})


# Each writer yields (bytes, is_content) pairs; content pieces are the ones paced.
Frames = Iterable[tuple[bytes, bool]]


async def _write_all(response: web.StreamResponse, frames: Frames, pacing: Reply) -> None:
    first = True
    for frame, is_content in frames:
        if is_content:
            if first and pacing.ttft_s:
                await asyncio.sleep(pacing.ttft_s)
            elif not first and pacing.tokens_per_s:
                await asyncio.sleep(1.0 / pacing.tokens_per_s)
            first = False
        await response.write(frame)


async def _fail_stream(request: web.Request, response: web.StreamResponse,
                       writer: _ChatWriter | _ResponsesWriter, script: Midstream) -> None:
    if script.how == "disconnect":
        if request.transport is not None:
            request.transport.abort()  # drop the TCP connection without ending the body
        return
    await response.write(writer.failure(script))
    await response.write_eof()


class _ChatWriter:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.model = str(body.get("model", ""))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.chunks = sse_.ChatChunks(self.model, include_usage=include_usage)

    def whole(self, reply: Reply) -> dict[str, Any]:
        return sse_.chat_completion(self.model, reply, self._usage(reply))

    def _usage(self, reply: Reply) -> dict[str, int]:
        return reply.usage or sse_.default_usage(self.body, reply)

    def stream(self, reply: Reply) -> Frames:
        yield sse_.sse(self.chunks.opening()), False
        for piece in sse_.pieces(reply.text):
            yield sse_.sse(self.chunks.text(piece)), True
        for index, call in enumerate(reply.tool_calls):
            yield sse_.sse(self.chunks.call_start(index, call)), True
            for fragment in sse_.fragments(call.arguments):
                yield sse_.sse(self.chunks.call_arguments(index, fragment)), False
        yield sse_.sse(self.chunks.finish(sse_.chat_finish_reason(reply))), False
        if self.chunks.include_usage:
            yield sse_.sse(self.chunks.usage(self._usage(reply))), False
        yield sse_.sse("[DONE]"), False

    def before_failure(self, script: Midstream) -> Frames:
        yield sse_.sse(self.chunks.opening()), False
        for piece in sse_.pieces(script.text_before):
            yield sse_.sse(self.chunks.text(piece)), True

    def failure(self, script: Midstream) -> bytes:
        if script.how == "malformed":
            return b'data: {"id": "' + self.chunks.id.encode() + b'", "choices": [{"delta\n\n'
        return sse_.sse(sse_.error_body(script.error_message, type_="server_error"))


class _ResponsesWriter:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.events = sse_.ResponseEvents(body)

    def whole(self, reply: Reply) -> dict[str, Any]:
        return sse_.response_object(self.body, reply, self._usage(reply))

    def _usage(self, reply: Reply) -> dict[str, int]:
        return reply.usage or sse_.default_usage(self.body, reply)

    @staticmethod
    def _frame(event: dict[str, Any]) -> bytes:
        return sse_.sse(event, event=event["type"])

    def _text(self, text: str, index: int, *, close: bool) -> Frames:
        item_id, opening = self.events.message_start(index)
        for event in opening:
            yield self._frame(event), False
        for piece in sse_.pieces(text):
            yield self._frame(self.events.text_delta(item_id, index, piece)), True
        if close:
            for event in self.events.message_done(item_id, index, text):
                yield self._frame(event), False

    def stream(self, reply: Reply) -> Frames:
        for event in self.events.created():
            yield self._frame(event), False
        index = 0
        if reply.text:
            yield from self._text(reply.text, index, close=True)
            index += 1
        for call in reply.tool_calls:
            for n, event in enumerate(self.events.call_events(index, call)):
                yield self._frame(event), n == 0
            index += 1
        yield self._frame(self.events.finish(reply.finish_reason, self._usage(reply))), False

    def before_failure(self, script: Midstream) -> Frames:
        for event in self.events.created():
            yield self._frame(event), False
        yield from self._text(script.text_before, 0, close=False)

    def failure(self, script: Midstream) -> bytes:
        if script.how == "malformed":
            return b"event: response.output_text.delta\ndata: {\"type\": \"response.out\n\n"
        if script.how == "failed":
            return self._frame(self.events.failed(script.error_message))
        return self._frame(self.events.error(script.error_message))


# --- pytest fixture ----------------------------------------------------------------------


@pytest_asyncio.fixture
async def model_server() -> AsyncIterator[FakeModelServer]:
    """A started FakeModelServer; the test fails if any request violated the schema."""
    server = FakeModelServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    if server.schema_errors:
        pytest.fail("requests violated the OpenAI schema:\n" + "\n".join(server.schema_errors))


# --- standalone ---------------------------------------------------------------------------


async def _serve_forever(args: argparse.Namespace) -> None:
    server = FakeModelServer(host=args.host, port=args.port, echo_ttft_s=args.ttft,
                             echo_tokens_per_s=args.tokens_per_s)
    await server.start()
    print(f"READY {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible model server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--tokens-per-s", type=float, default=None, help="streaming pace")
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
