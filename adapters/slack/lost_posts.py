"""Posting a Slack message at most once when the answer to the call is lost.

chat.postMessage and chat.startStream create a message, and Slack takes no idempotency
key for them. A connection reset, a timeout or a 5xx can hide a call Slack carried out,
and sending it again blindly (as slack_sdk's retry handlers do) shows the reply twice.
So these calls go through a client without those retries, and before trying again we
look in the thread for the message the lost call would have made:
- a post carries the core's nonce in its message metadata: the message with that
  nonce is the one (Slack returns metadata with include_all_metadata);
- a stream cannot carry metadata: a message our bot wrote, newer than the one the
  reply answers, not known to this process, showing exactly the text sent (as Slack
  renders it: words and digits in order, link targets and markup aside).
Another reply, a marker or a summary notice is never taken for it. Only two replicas
streaming the same words in one thread could still be confused.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api_errors import api_error
from adapters.slack.markup import decode_entities
from adapters.slack.rate import SlackRateGate
from core.types import ThreadKey

log = logging.getLogger(__name__)

POST_TRIES = 3  # as many as slack_sdk's own retries gave a post before
PAGE = 200  # messages read per page; a lost post is among the newest
MAX_PAGES = 3
SKEW_S = 120.0  # our clock against Slack's: read from this long before the send
METADATA_TYPE = "threadwise_post"  # message metadata event_type carrying the nonce
REMEMBERED = 10_000  # our messages' ts kept, so they are never adopted as lost ones


def maybe_performed(exc: BaseException) -> bool:
    """The call may have been carried out although we got no answer to it."""
    if isinstance(exc, SlackApiError):
        return int(exc.response.status_code) >= 500
    return isinstance(exc, (aiohttp.ClientError, TimeoutError, ConnectionError))


_MARKDOWN_LINK = re.compile(r"\]\([^)\s]*\)")  # [label](target) → [label]
_SLACK_LINK = re.compile(r"<[^|<>]*\|([^<>]*)>")  # <target|label> → label


def _squeezed(text: str) -> str:
    """What identifies a text however Slack renders it: its letters and digits (or,
    with none, e.g. emoji only, its visible characters), link targets left out."""
    text = _SLACK_LINK.sub(r"\1", _MARKDOWN_LINK.sub("]", decode_entities(text)))
    words = "".join(ch for ch in text if ch.isalnum())
    return words or "".join(text.split())


def _nonce_of(message: Mapping[str, Any]) -> str | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_TYPE:
        return None
    payload = metadata.get("event_payload")
    return str(payload.get("nonce")) if isinstance(payload, dict) else None


def _texts(message: Mapping[str, Any]) -> Iterable[str]:
    """The message's fallback text, and all the text in its blocks, in order."""
    yield str(message.get("text") or "")
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "text" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks") or [])
    yield "".join(found)


class LostPosts:
    def __init__(self, reader: AsyncWebClient, gate: SlackRateGate) -> None:
        self._reader = reader
        self._gate = gate
        self.bot_id: str | None = None  # known once the bot has called auth.test
        self._metadata = True  # until the workspace refuses message metadata
        self._ours: OrderedDict[str, None] = OrderedDict()

    async def post_message(self, client: AsyncWebClient, nonce: str, **args: Any) -> str:
        """chat.postMessage carrying `nonce` in its message metadata; the ts. Should this
        workspace refuse metadata, posts go without it (found by their text instead)."""
        if self._metadata:
            metadata = {"event_type": METADATA_TYPE, "event_payload": {"nonce": nonce}}
            try:
                resp = await client.chat_postMessage(metadata=metadata, **args)
                return str(resp["ts"])
            except SlackApiError as exc:
                error = api_error(exc)
                if "metadata" not in error:
                    raise
                log.warning("Slack refused message metadata (%s); posting without it", error)
                self._metadata = False
        resp = await client.chat_postMessage(**args)
        return str(resp["ts"])

    def remember(self, ts: str) -> None:
        """A message of ours Slack confirmed: never to be adopted as a lost one."""
        self._ours[ts] = None
        self._ours.move_to_end(ts)
        while len(self._ours) > REMEMBERED:
            self._ours.popitem(last=False)

    async def create(
        self, key: ThreadKey, after_ts: str, text: str, send: Callable[[], Awaitable[str]],
        *, nonce: str | None = None, tries: int = POST_TRIES,
    ) -> tuple[str, bool]:
        """(ts, found) of the message send() creates with `text` (and `nonce` in its
        metadata, when given): found when its answer was lost and the message was found
        in the thread. Sent again only while Slack shows no such message."""
        started = time.time()
        for attempt in range(1, tries + 1):
            try:
                ts = await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not maybe_performed(exc):
                    raise
                found = await self.find(key, after_ts, text, since=started, nonce=nonce)
                if found is not None:
                    log.info("Slack posted %s although its answer was lost (%s); not "
                             "posting again", found, type(exc).__name__)
                    self.remember(found)
                    return found, True
                if attempt == tries:
                    raise
                log.info("a post in %s failed (%s); trying again", key, type(exc).__name__)
                await asyncio.sleep(0.5 * attempt)
            else:
                if ts:
                    self.remember(ts)
                return ts, False
        raise AssertionError("unreachable")

    async def find(
        self, key: ThreadKey, after_ts: str, text: str, *, since: float,
        nonce: str | None = None,
    ) -> str | None:
        """The message of ours a lost call made in the thread (key.root "": at the top
        of the channel), if Slack shows one."""
        if self.bot_id is None:
            return None
        oldest = max(float(after_ts), since - SKEW_S)
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                resp = await self._read(key, oldest, cursor)
                for m in resp.get("messages") or ():
                    ts = str(m.get("ts") or "")
                    if (m.get("bot_id") == self.bot_id and ts not in self._ours
                            and float(ts) > float(after_ts) and _made_by(m, text, nonce)):
                        return ts
                cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
                if cursor is None:
                    return None
        except Exception as exc:  # cannot tell: better a possible double than no reply
            log.warning("could not look for a lost post in %s: %s", key, type(exc).__name__)
        return None

    async def _read(self, key: ThreadKey, oldest: float, cursor: str | None) -> Any:
        if key.root:
            await self._gate.acquire("conversations.replies", key.space)
            return await self._reader.conversations_replies(
                channel=key.channel, ts=key.root, oldest=f"{oldest:.6f}", inclusive=False,
                limit=PAGE, cursor=cursor, include_all_metadata=True,
            )
        # A post at the top of the channel (a channel summary).
        await self._gate.acquire("conversations.history", key.space)
        return await self._reader.conversations_history(
            channel=key.channel, oldest=f"{oldest:.6f}", inclusive=False, limit=PAGE,
            cursor=cursor, include_all_metadata=True,
        )


def _made_by(message: Mapping[str, Any], text: str, nonce: str | None) -> bool:
    """Whether the lost call with this text (and nonce) made this message."""
    found = _nonce_of(message)
    if found is not None:  # a post of ours: its nonce says which
        return found == nonce
    # A stream (no metadata), or a Slack that did not return it: the whole text.
    wanted = _squeezed(text)
    return bool(wanted) and any(_squeezed(t) == wanted for t in _texts(message))
