"""Reading a thread, or a stretch of a channel, from Slack for a summary.

conversations.replies / conversations.history with cursor pagination, every page paced
by the rate gate under the method's tier. Internal (customer-built) and Marketplace apps
get Tier 3 (~50/min); since 2025 a commercially distributed app outside the Marketplace
gets 1 request/min and at most 15 messages a page. SLACK_HISTORY_PER_MIN and
SLACK_HISTORY_PAGE_SIZE cover that case (set 1 and 15).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.links import permalink
from adapters.slack.markup import to_markdown
from adapters.slack.rate import MethodRate, SlackRateGate
from adapters.slack.users import DisplayNames
from core.summarize import Progress, SourceMessage

log = logging.getLogger(__name__)

READ_METHODS = ("conversations.replies", "conversations.history")
MAX_MESSAGES = 10_000  # a summary never reads more than this (cost bound)
SKIPPED_SUBTYPES = {
    "channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_name",
    "channel_archive", "channel_unarchive", "group_join", "group_leave", "group_topic",
    "group_purpose", "group_name", "pinned_item", "unpinned_item", "bot_add", "bot_remove",
    "tombstone", "assistant_app_thread",
}
REFUSALS = {
    "not_in_channel": "I'm not in this channel, so I can't read it. Add me with "
                      "`/invite @threadwise`, then try again.",
    "channel_not_found": "I can't see this channel. Add me to it first (`/invite @threadwise`).",
    "thread_not_found": "I couldn't find that thread (was it deleted?).",
    "missing_scope": "I'm missing a Slack permission to read here; ask an admin to reinstall "
                     "the app with the scopes in its manifest.",
}


class SlackReadSettings(BaseSettings):
    """Read pacing for summaries (SLACK_HISTORY_*), from the environment and .env."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        env_ignore_empty=True,  # `SLACK_HISTORY_PER_MIN=` in a template means the default
    )

    per_minute: float = Field(40, alias="SLACK_HISTORY_PER_MIN", gt=0, le=100)
    page_size: int = Field(200, alias="SLACK_HISTORY_PAGE_SIZE", ge=1, le=1000)
    # Threads whose replies a channel summary also reads (0: top-level messages only).
    threads: int = Field(10, alias="SLACK_SUMMARY_THREADS", ge=0, le=100)

    def rate_overrides(self) -> dict[str, MethodRate]:
        burst = 3 if self.per_minute >= 20 else 1
        return {m: MethodRate(self.per_minute, burst) for m in READ_METHODS}


def load_read_settings(**overrides: Any) -> SlackReadSettings:
    """Read the environment (and .env); keyword overrides use the SLACK_* names."""
    return SlackReadSettings(**overrides)


class ReadRefused(Exception):
    """Slack will not let us read there; the text says so in plain words."""


def refusal(error: str) -> ReadRefused:
    return ReadRefused(REFUSALS.get(error, f"Slack refused to let me read this ({error})."))


def refusal_for(exc: SlackApiError) -> ReadRefused:
    return refusal(str(exc.response.get("error")))


class SlackHistory:
    def __init__(
        self, client: AsyncWebClient, gate: SlackRateGate, names: DisplayNames, *, team: str,
        workspace_url: str, read: SlackReadSettings | None = None,
    ) -> None:
        self.client = client
        self.gate = gate
        self.names = names
        self.team = team
        self.workspace_url = workspace_url
        self.read = read or load_read_settings()

    async def thread(
        self, channel: str, thread_ts: str, *, progress: Progress | None = None,
        max_pages: int | None = None,
    ) -> list[SourceMessage]:
        raw = await self._pages("conversations.replies", {"channel": channel, "ts": thread_ts},
                                progress, "the thread", max_pages=max_pages)
        seen: dict[str, Mapping[str, Any]] = {}
        for m in raw:  # the parent may come again on later pages
            seen.setdefault(str(m.get("ts")), m)
        ordered = sorted(seen.values(), key=lambda m: float(str(m.get("ts"))))
        return await self._sources(channel, ordered, thread_ts)

    async def since(
        self, channel: str, oldest: float, *, progress: Progress | None = None
    ) -> list[SourceMessage]:
        """The channel's messages since `oldest` (unix time), oldest first; replies of the
        busiest threads follow their parent."""
        params = {"channel": channel, "oldest": f"{oldest:.6f}"}
        raw = await self._pages("conversations.history", params, progress, "the channel")
        raw.reverse()  # history pages come newest first
        threads = sorted(
            (m for m in raw if int(m.get("reply_count") or 0) > 0),
            key=lambda m: -int(m.get("reply_count") or 0),
        )[: self.read.threads]
        replies: dict[str, list[Mapping[str, Any]]] = {}
        for parent in threads:
            ts = str(parent["ts"])
            got = await self._pages("conversations.replies",
                                    {"channel": channel, "ts": ts, "oldest": params["oldest"]},
                                    None, "a thread")
            replies[ts] = [r for r in got if str(r.get("ts")) != ts]
        # A reply also sent to the channel comes back in both reads: keep it in its thread.
        in_threads = {str(r.get("ts")) for got in replies.values() for r in got}
        out: list[SourceMessage] = []
        for m in raw:
            ts = str(m.get("ts"))
            if ts in in_threads:
                continue
            out.extend(await self._sources(channel, [m], None))
            if ts in replies:
                out.extend(await self._sources(channel, replies[ts], ts))
        return out

    async def _pages(
        self, method: str, params: dict[str, str], progress: Progress | None, what: str,
        *, max_pages: int | None = None,
    ) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        cursor: str | None = None
        pages = 0
        call = (self.client.conversations_replies if method == "conversations.replies"
                else self.client.conversations_history)
        while len(out) < MAX_MESSAGES:
            await self.gate.acquire(method, self.team)
            try:
                resp = await call(**params, limit=self.read.page_size,  # type: ignore[arg-type]
                                  cursor=cursor)
            except SlackApiError as exc:
                raise refusal_for(exc) from None
            out.extend(resp.get("messages") or [])
            pages += 1
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None or pages == max_pages:
                break
            if progress is not None:
                await progress(f"Reading {what}… {len(out):,} messages so far")
        if len(out) >= MAX_MESSAGES:
            log.warning("summary read stopped at %d messages in %s", MAX_MESSAGES, params)
        return out[:MAX_MESSAGES]

    async def _sources(
        self, channel: str, raw: list[Mapping[str, Any]], thread_ts: str | None
    ) -> list[SourceMessage]:
        out = []
        for m in raw:
            source = await self._source(channel, m, thread_ts)
            if source is not None:
                out.append(source)
        return out

    async def _source(
        self, channel: str, m: Mapping[str, Any], thread_ts: str | None
    ) -> SourceMessage | None:
        if m.get("subtype") in SKIPPED_SUBTYPES or not m.get("ts"):
            return None
        ts = str(m["ts"])
        text = await to_markdown(str(m.get("text") or ""), bot_user_id=None,
                                 resolve=self.names.name)
        files = tuple(
            str(f.get("name") or f.get("title") or "file")
            for f in m.get("files") or () if f.get("mode") != "tombstone"
        )
        if not text and not files:
            return None
        return SourceMessage(
            id=ts, author=await self._author(m), text=text,
            link=permalink(self.workspace_url, channel, ts, thread_ts), at=float(ts),
            files=files,
        )

    async def _author(self, m: Mapping[str, Any]) -> str:
        if m.get("user"):
            return await self.names.name(str(m["user"]))
        profile = m.get("bot_profile") or {}
        return str(m.get("username") or profile.get("name") or "a bot")
