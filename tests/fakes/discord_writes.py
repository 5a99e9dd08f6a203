"""What the emulator's REST handlers share: JSON answers, write buckets, the write log."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.discord_payloads import Json, effective_pings, iso_now
from tests.fakes.discord_state import EmulatorState, RateLimitHit, Write

Dispatch = Callable[[str, Json], Awaitable[None]]
EPHEMERAL = 1 << 6
LOADING = 1 << 7


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Content-Type exactly `application/json` (discord.py compares the header)."""
    if status == 204:
        return web.Response(status=204, headers=headers)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def error(status: int, code: int, message: str) -> web.Response:
    return reply({"code": code, "message": message}, status)


class Writes:
    """Message writes as Discord meters and records them (channels and webhooks alike)."""

    def __init__(self, state: EmulatorState, dispatch: Dispatch) -> None:
        self.state = state
        self.dispatch = dispatch

    def _take(self, bucket: str) -> web.Response | dict[str, str]:
        """Charge one write to a bucket: its rate-limit headers, or the 429 to send."""
        now = self.state.now()
        window = self.state.bucket(bucket)
        wait = window.take(now)
        reset_after = window.reset_after(now)
        headers = {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining()),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": f"hash-{bucket.split(':')[0]}",
        }
        if not wait:
            return headers
        via = self.state.drop_via_next <= 0
        self.state.drop_via_next -= 0 if via else 1
        self.state.rate_limits.append(RateLimitHit(time.time(), bucket, wait, via))
        headers.update({"Retry-After": f"{wait:.3f}", "X-RateLimit-Scope": "user"})
        if via:
            headers["Via"] = "1.1 google"
        body = {"message": "You are being rate limited.", "retry_after": round(wait, 3),
                "global": False}
        return reply(body, 429, headers)

    def take_global(self) -> web.Response | None:
        """Charge one request to the bot's global limit; the 429 to send when it is spent.

        A global 429 looks like Discord's: `"global": true` in the body and the
        X-RateLimit-Global header, and no bucket headers (no route bucket is involved).
        """
        wait = self.state.global_window.take(self.state.now())
        if not wait:
            return None
        via = self.state.drop_via_next <= 0
        self.state.drop_via_next -= 0 if via else 1
        self.state.rate_limits.append(RateLimitHit(time.time(), "global", wait, via))
        headers = {"Retry-After": f"{wait:.3f}", "X-RateLimit-Global": "true",
                   "X-RateLimit-Scope": "global"}
        if via:
            headers["Via"] = "1.1 google"
        body = {"message": "You are being rate limited.", "retry_after": round(wait, 3),
                "global": True}
        return reply(body, 429, headers)

    def _record(self, kind: str, channel_id: str, body: Json, status: int,
                message_id: str | None = None, replied_user: str | None = None) -> Write:
        content = body.get("content")
        allowed = body.get("allowed_mentions")
        pings = effective_pings(content or "", allowed, replied_user=replied_user)
        write = Write(time.time(), kind, channel_id, message_id, content, allowed,
                      body.get("message_reference"), status, pings)
        self.state.writes.append(write)
        return write

    @staticmethod
    def _apply_edit(message: Json, body: Json) -> None:
        if "content" in body:
            message["content"] = body["content"] or ""
        message["edited_timestamp"] = iso_now()
        message["flags"] = message.get("flags", 0) & ~LOADING
