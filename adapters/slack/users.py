"""Display names from users.info, cached per adapter instance (bounded, with a TTL)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api_errors import api_error
from adapters.slack.rate import SlackRateGate

log = logging.getLogger(__name__)


class DisplayNames:
    def __init__(
        self, client: AsyncWebClient, gate: SlackRateGate, *, team: str = "",
        ttl_s: float = 3600.0, max_entries: int = 5000,
    ) -> None:
        self._client = client
        self._gate = gate
        self._team = team
        self._ttl_s = ttl_s
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def name(self, user_id: str) -> str:
        """The name people see for this user; the id itself if Slack will not say."""
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] > time.monotonic():
            self._cache.move_to_end(user_id)
            return hit[1]
        pending = self._inflight.get(user_id)
        if pending is not None:  # many events from one person: one lookup
            return await asyncio.shield(pending)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[user_id] = fut
        try:
            name = await self._lookup(user_id)
            fut.set_result(name)
            return name
        finally:
            if not fut.done():
                fut.set_result(user_id)
            del self._inflight[user_id]

    async def _lookup(self, user_id: str) -> str:
        try:
            await self._gate.acquire("users.info", self._team)
            resp = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.info("users.info failed for %s: %s", user_id, api_error(exc))
            return user_id
        except Exception as exc:  # a name is a nicety: never lose the message over it
            log.info("users.info failed for %s: %s", user_id, type(exc).__name__)
            return user_id
        user = resp.get("user") or {}
        profile = user.get("profile") or {}
        name = str(
            profile.get("display_name") or profile.get("real_name")
            or user.get("real_name") or user.get("name") or user_id
        )
        self._cache[user_id] = (time.monotonic() + self._ttl_s, name)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return name
