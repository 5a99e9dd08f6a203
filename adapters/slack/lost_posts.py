"""Posting a Slack message at most once when the answer to the call is lost.

chat.postMessage and chat.startStream create a message, and Slack takes no idempotency
key for them. A connection reset, a timeout or a 5xx can hide a call Slack carried out,
and sending it again blindly (as slack_sdk's retry handlers do) shows the reply twice.
So these calls go through a client without those retries. Before trying again, we look
in the thread for a message of ours newer than the one the reply answers: a turn holds
its thread's lease, so such a message can only be the one just lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.rate import SlackRateGate
from core.types import ThreadKey

log = logging.getLogger(__name__)

POST_TRIES = 3  # as many as slack_sdk's own retries gave a post before
LOOKBACK = 20  # messages read after the one answered; a turn posts far fewer


def maybe_performed(exc: BaseException) -> bool:
    """The call may have been carried out although we got no answer to it."""
    if isinstance(exc, SlackApiError):
        return int(exc.response.status_code) >= 500
    return isinstance(exc, (aiohttp.ClientError, TimeoutError, ConnectionError))


class LostPosts:
    def __init__(self, reader: AsyncWebClient, gate: SlackRateGate) -> None:
        self._reader = reader
        self._gate = gate
        self.bot_id: str | None = None  # known once the bot has called auth.test

    async def create(
        self, key: ThreadKey, after_ts: str, send: Callable[[], Awaitable[str]], *,
        tries: int = POST_TRIES,
    ) -> str:
        """The ts of the message send() creates; sent again only while Slack shows none."""
        for attempt in range(1, tries + 1):
            try:
                return await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not maybe_performed(exc):
                    raise
                found = await self.find(key, after_ts)
                if found is not None:
                    log.info("Slack posted %s although its answer was lost (%s); not "
                             "posting again", found, type(exc).__name__)
                    return found
                if attempt == tries:
                    raise
                log.info("a post in %s failed (%s); trying again", key, type(exc).__name__)
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    async def find(self, key: ThreadKey, after_ts: str) -> str | None:
        """Our newest message in the thread after `after_ts`, if Slack shows one."""
        if self.bot_id is None:
            return None
        try:
            await self._gate.acquire("conversations.replies", key.space)
            resp = await self._reader.conversations_replies(
                channel=key.channel, ts=key.root, oldest=after_ts, inclusive=False,
                limit=LOOKBACK,
            )
        except Exception as exc:  # cannot tell: better a possible double than no reply
            log.warning("could not look for a lost post in %s: %s", key, type(exc).__name__)
            return None
        ours = [
            str(m["ts"]) for m in resp.get("messages") or ()
            if m.get("bot_id") == self.bot_id and float(m["ts"]) > float(after_ts)
        ]
        return max(ours, key=float) if ours else None
