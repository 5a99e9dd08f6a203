"""Turn every way a model call can fail into a ModelError with a short, plain reason.

Users see these reasons in the thread, so they name the cause ("rate limited",
"could not reach ...") and the provider's own explanation, never a stack trace,
a request body or a credential.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import openai

from core.model.types import ModelError

MAX_REASON_CHARS = 300

_STATUS_WORDS: dict[int, str] = {
    400: "the model provider rejected the request",
    401: "the model provider rejected the API key",
    403: "the model provider refused access",
    404: "the model provider does not know this model or endpoint",
    408: "the model provider timed out",
    409: "the model provider reported a conflict",
    413: "the request is too large for the model provider",
    422: "the model provider rejected the request",
    429: "the model provider is rate limiting requests",
}


def provider_host(base_url: str) -> str:
    """host[:port] of the base URL: enough to locate it, never any userinfo in it."""
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def provider_reason(body: object) -> str | None:
    """The most specific message in an error body.

    Handles the plain `{"error": {"message": ...}}` shape (or its inner object, which
    is what the SDK keeps) and the wrapped `backend_error` shape some providers use:
    `{"message": "Backend request failed with status 400", "type": "backend_error",
    "details": {"error": {"message": "Unsupported parameter: ..."}}}`.
    """
    if isinstance(body, str):
        return _shorten(body) if body.strip() and not body.lstrip().startswith("<") else None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):
        return provider_reason(body["error"])
    details: Any = body.get("details")
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            details = {"message": details}
    inner = provider_reason(details) if isinstance(details, dict) else None
    if inner:
        return inner
    message = body.get("message")
    return _shorten(message) if isinstance(message, str) and message.strip() else None


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def to_model_error(exc: BaseException, *, host: str, mid_stream: bool = False) -> ModelError:
    """Map an SDK / stream failure to a ModelError (status and retryable set).

    mid_stream: text had already arrived, so a connection error means the connection
    was lost, not that the provider could not be reached.
    """
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(f"timed out waiting for the model provider at {host}", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        if mid_stream:
            return ModelError(f"lost the connection to the model provider at {host}",
                              retryable=True)
        return ModelError(f"could not reach the model provider at {host}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        words = _STATUS_WORDS.get(status) or (
            "the model provider had an internal error" if status >= 500
            else "the model provider returned an error"
        )
        reason = provider_reason(exc.body)
        text = f"{words} ({status}): {reason}" if reason else f"{words} ({status})"
        return ModelError(text, status=status, retryable=_retryable_status(status))
    if isinstance(exc, openai.APIError):
        # Raised for an error event inside a stream that had already started.
        reason = provider_reason(exc.body) or _shorten(exc.message)
        return ModelError(f"the model stream failed: {reason}", retryable=True)
    if isinstance(exc, json.JSONDecodeError):
        return ModelError("the model provider sent a malformed stream", retryable=True)
    return ModelError(f"the model call failed: {_shorten(str(exc)) or type(exc).__name__}")


def stream_event_error(message: str | None, code: str | None, *, failed: bool) -> ModelError:
    """A Responses `error` / `response.failed` event as a ModelError."""
    what = "the model failed" if failed else "the model stream failed"
    reason = _shorten(message or code or "no reason given")
    retryable = code in (None, "server_error", "rate_limit_exceeded", "vector_store_timeout")
    return ModelError(f"{what}: {reason}", retryable=retryable)


def operator_hint(exc: ModelError, base_url: str, model: str) -> str:
    """What an operator should check for the usual set-up mistakes, or "" (for logs and
    `threadwise check`; a chat user cannot fix the deployment). `model`: the one asked
    for, which a channel's THREADWISE_CONFIG section may have chosen."""
    if exc.status == 404:
        if base_url.rstrip("/").endswith("/v1"):
            return (f"is {model} spelled as the provider lists it? (MODEL_NAME, or a "
                    f"channel's model in THREADWISE_CONFIG)")
        return "does MODEL_BASE_URL end in /v1?"
    if "WRONG_VERSION_NUMBER" in exc.reason and base_url.startswith("https://"):
        return "the server speaks plain HTTP: use http:// in MODEL_BASE_URL"
    return ""
