"""Summaries in Slack: the "Summarize thread" message shortcut and `/summarize`.

Slack does not deliver developer slash commands from inside threads, so `/summarize`
takes the thread's link (`/summarize <permalink>`), or summarizes the channel's last N
hours (`/summarize 24h`, 24 by default); a `thread_ts` in the payload is honoured should
Slack send one. `private` sends the result only to the requester (ephemeral).

Only the conversation the command was run in is read, and only when the bot is a member
and, for private channels, the requester is one too.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import TaskKeeper
from adapters.slack.history import ReadRefused, SlackHistory, refusal, refusal_for
from adapters.slack.links import parse_slack_link
from adapters.slack.lost_posts import LostPosts
from adapters.slack.markup import neutralise
from adapters.slack.not_enabled import USERS_ONLY
from adapters.slack.port import MAX_CHARS
from adapters.slack.rate import SlackRateGate
from core.channel_overrides import ChannelOverrides
from core.model.types import ModelError
from core.ports import new_nonce
from core.splitting import split_all
from core.summarize import Progress, SourceMessage
from core.summary_service import MAX_HOURS, ProgressBoard, SummaryService, hours_label, render
from core.types import ThreadKey

log = logging.getLogger(__name__)

Tell = Callable[[str], Awaitable[None]]  # an ephemeral note to the requester

SHORTCUT_ID = "summarize_thread"
SHORTCUT_PRIVATE_ID = "summarize_thread_private"
COMMAND = "/summarize"
DEFAULT_HOURS = 24.0
PRIVATE_WORDS = {"private", "privately", "me", "only-me", "ephemeral"}
_WORDS = re.compile(r"<[^<>]*>|\S+")  # a Slack-escaped <url|label> is one word
_HOURS = re.compile(r"^(\d{1,4}(?:\.\d+)?)(h|hr|hrs|hour|hours)?$", re.IGNORECASE)
USAGE = (
    "Usage: `/summarize [24h] [private]` summarizes this channel's last hours; "
    "`/summarize <link to a message> [private]` summarizes that message's thread. "
    "In a thread, use the message menu → *Summarize thread*."
)
NOT_ENABLED = "I'm not enabled in this channel."
NOT_YOURS = "You can only summarize conversations you're a member of."
OTHER_CHANNEL = "I only summarize the channel you run `/summarize` in; run it there."


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    team: str
    channel: str
    user: str
    thread_ts: str | None  # None: the channel's last `hours`
    hours: float = DEFAULT_HOURS
    private: bool = False


def parse_command(text: str, *, team: str, channel: str, user: str,
                  thread_ts: str | None) -> SummaryRequest | str:
    """The request a `/summarize` text asks for, or the message explaining what is wrong."""
    hours: float | None = None
    private = False
    root = thread_ts or None
    for word in _WORDS.findall(text):
        lowered = word.lower()
        if lowered in PRIVATE_WORDS:
            private = True
        elif lowered == "help":
            return USAGE
        elif lowered in ("h", "hr", "hrs", "hour", "hours"):
            continue  # "/summarize 6 hours"
        elif (m := _HOURS.match(word)) is not None:
            hours = float(m.group(1))
        elif (link := parse_slack_link(word)) is not None:
            if link.channel != channel:
                return OTHER_CHANNEL
            root = link.root
        else:
            return f"I didn't understand `{word[:40]}`. {USAGE}"
    if hours is not None and not 0 < hours <= MAX_HOURS:
        return f"Pick between 1 and {MAX_HOURS} hours. {USAGE}"
    if hours is not None:
        root = None  # an explicit time range asks for the channel
    return SummaryRequest(team, channel, user, root, hours or DEFAULT_HOURS, private)


class SlackSummaries:
    def __init__(
        self, *, client: AsyncWebClient, gate: SlackRateGate, history: SlackHistory,
        service: SummaryService, allowed_channels: tuple[str, ...] = (), speed: float = 1.0,
        overrides: ChannelOverrides | None = None, lost: LostPosts | None = None,
        posts: AsyncWebClient | None = None,
    ) -> None:
        self.client = client
        self.lost = lost  # with `posts`, a client that does not resend lost posts
        self.posts = posts or client
        self.gate = gate
        self.history = history
        self.service = service
        self.allowed_channels = allowed_channels
        self.overrides = overrides or ChannelOverrides()
        self.progress_gap_s = 2.0 / speed

    # -- the flow -------------------------------------------------------------------------

    async def run(self, req: SummaryRequest, tell: Tell | None = None) -> None:
        """Summarize and show the result where asked. Never raises: failures are shown."""
        tell = tell or (lambda text: self._ephemeral(req, text))
        try:
            refusal = await self.access(req)
        except SlackApiError as exc:
            refusal = str(refusal_for(exc))
        except Exception as exc:  # Slack unreachable, a timeout: the requester must hear
            log.warning("summary access check failed in %s: %s", req.channel, _plain(exc))
            reason = (f"Slack didn't answer when I checked who may read this conversation "
                      f"({_plain(exc)}); please try again")
            await self._fail(req, None, reason, tell)
            return
        if refusal is not None:
            await self._quietly(tell(refusal))
            return
        placeholder: str | None = None
        try:
            if not req.private:
                placeholder = await self._post(req.channel, req.thread_ts, "⏳ Summarizing…")
            board = ProgressBoard(self._progress_writer(req, placeholder),
                                  min_gap_s=self.progress_gap_s)
            try:
                text = await self.summary_text(req, board, skip=placeholder)
            finally:
                await board.close()
            await self._deliver(req, placeholder, text)
        except (ReadRefused, ModelError) as exc:
            await self._fail(req, placeholder, str(exc), tell)
        except Exception as exc:
            log.exception("summary failed in %s", req.channel)
            await self._fail(req, placeholder, _plain(exc), tell)

    async def summary_text(
        self, req: SummaryRequest, board: Progress, *, skip: str | None = None
    ) -> str:
        """Read what the request asks for and summarize it (Markdown, ready to show)."""
        if req.thread_ts is not None:
            messages = await self.history.thread(req.channel, req.thread_ts, progress=board)
            heading, title = "🧵 **Summary of this thread**", "a Slack thread"
        else:
            since = time.time() - req.hours * 3600
            messages = await self.history.since(req.channel, since, progress=board)
            span = hours_label(req.hours)
            heading = f"🧵 **Summary of the last {span} in this channel**"
            title = f"a Slack channel, last {span}"
        messages = [m for m in messages if m.id != skip]  # our own "Summarizing…" notice
        if not messages:
            return f"There's nothing to summarize here in the last {hours_label(req.hours)}."
        noted: list[SourceMessage] = await self.service.with_image_notes(
            "slack", req.channel, messages)
        key = ThreadKey("slack", req.team, req.channel, req.thread_ts or "channel")
        summary = await self.service.summarize(noted, title=title, key=key, user_id=req.user,
                                               progress=board)
        return render(summary, heading=heading)

    async def access(self, req: SummaryRequest) -> str | None:
        """Why this request may not read its conversation, or None when it may."""
        if self.allowed_channels and req.channel not in self.allowed_channels:
            return NOT_ENABLED
        users = self.overrides.slack_channel(req.channel).allowed_users
        if users is not None and req.user not in users:
            return USERS_ONLY
        if req.channel.startswith("D"):
            return None  # a DM the command came from: both of us are in it
        await self.gate.acquire("conversations.info", req.team)
        info = (await self.client.conversations_info(channel=req.channel)).get("channel") or {}
        if not info.get("is_member"):
            return str(refusal("not_in_channel"))
        private = info.get("is_private") or info.get("is_mpim") or info.get("is_group")
        if private and req.user and not await self._member(req):
            return NOT_YOURS
        return None

    async def _member(self, req: SummaryRequest) -> bool:
        cursor: str | None = None
        while True:
            await self.gate.acquire("conversations.members", req.team)
            resp = await self.client.conversations_members(
                channel=req.channel, cursor=cursor, limit=1000)
            if req.user in (resp.get("members") or []):
                return True
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return False

    # -- writing --------------------------------------------------------------------------

    def _progress_writer(
        self, req: SummaryRequest, placeholder: str | None
    ) -> Callable[[str], Awaitable[None]]:
        async def write(text: str) -> None:
            if placeholder is not None:
                await self._update(req, placeholder, f"⏳ {text}")

        return write

    async def _deliver(self, req: SummaryRequest, placeholder: str | None, text: str) -> None:
        parts = split_all(text, MAX_CHARS)
        if req.private:
            for part in parts:
                await self._ephemeral(req, part)
            return
        assert placeholder is not None
        await self._update(req, placeholder, parts[0])
        for part in parts[1:]:  # a channel summary continues in its own thread
            await self._post(req.channel, req.thread_ts or placeholder, part)

    async def publish(self, req: SummaryRequest, text: str) -> None:
        """Post a finished summary in the thread (or the channel, continuing in its thread)."""
        parts = split_all(text, MAX_CHARS)
        first = await self._post(req.channel, req.thread_ts, parts[0])
        for part in parts[1:]:
            await self._post(req.channel, req.thread_ts or first, part)

    async def _fail(self, req: SummaryRequest, placeholder: str | None, reason: str,
                    tell: Tell) -> None:
        text = f"⚠️ Sorry, I couldn't summarize this: {reason}"
        if placeholder is not None:
            await self._quietly(self._update(req, placeholder, text))
        else:
            await self._quietly(tell(text))

    async def _post(self, channel: str, thread_ts: str | None, markdown: str) -> str:
        text, nonce = neutralise(markdown), new_nonce()
        args: dict[str, Any] = {"channel": channel, "thread_ts": thread_ts,
                                "markdown_text": text, "unfurl_links": False,
                                "unfurl_media": False}
        if self.lost is None:
            await self.gate.acquire("chat.postMessage", self.history.team, channel)
            return str((await self.posts.chat_postMessage(**args))["ts"])
        lost = self.lost

        async def send() -> str:
            await self.gate.acquire("chat.postMessage", self.history.team, channel)
            return await lost.post_message(self.posts, nonce, **args)

        # A post whose answer is lost is looked for, not sent twice (see lost_posts.py).
        key = ThreadKey("slack", self.history.team, channel, thread_ts or "")
        ts, _ = await lost.create(key, thread_ts or "0", text, send, nonce=nonce)
        return ts

    async def _update(self, req: SummaryRequest, ts: str, markdown: str) -> None:
        await self.gate.acquire("chat.update", req.team)
        await self.client.chat_update(channel=req.channel, ts=ts,
                                      markdown_text=neutralise(markdown))

    async def _ephemeral(self, req: SummaryRequest, markdown: str) -> None:
        await self.gate.acquire("chat.postEphemeral", req.team)
        await self.client.chat_postEphemeral(
            channel=req.channel, user=req.user, thread_ts=req.thread_ts,
            markdown_text=neutralise(markdown),
        )

    @staticmethod
    async def _quietly(aw: Awaitable[None]) -> None:
        try:
            await aw
        except Exception as exc:
            log.warning("could not show a summary notice: %s", exc)


def _plain(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(reason).splitlines()[0][:300]


def register_summaries(app: AsyncApp, summaries: SlackSummaries, tasks: TaskKeeper) -> None:
    """The shortcut and the slash command: ack at once, summarize in a tracked task."""

    def teller(respond: AsyncRespond) -> Tell:
        async def tell(text: str) -> None:
            # response_url reaches the requester even where the bot cannot post.
            await respond(text=text, response_type="ephemeral", replace_original=False)

        return tell

    async def shortcut(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                       *, private: bool) -> None:
        await ack()
        message = body.get("message") or {}
        req = SummaryRequest(
            team=str((body.get("team") or {}).get("id") or ""),
            channel=str((body.get("channel") or {}).get("id") or ""),
            user=str((body.get("user") or {}).get("id") or ""),
            thread_ts=str(message.get("thread_ts") or message.get("ts") or body["message_ts"]),
            private=private,
        )
        tasks.spawn(summaries.run(req, teller(respond)), name=f"slack-summary:{req.thread_ts}")

    @app.shortcut(SHORTCUT_ID)
    async def on_shortcut(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await shortcut(ack, body, respond, private=False)

    @app.shortcut(SHORTCUT_PRIVATE_ID)
    async def on_private_shortcut(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await shortcut(ack, body, respond, private=True)

    @app.command(COMMAND)
    async def on_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        parsed = parse_command(
            str(body.get("text") or ""), team=str(body.get("team_id") or ""),
            channel=str(body.get("channel_id") or ""), user=str(body.get("user_id") or ""),
            thread_ts=body.get("thread_ts") or None,
        )
        if isinstance(parsed, str):
            await ack(text=parsed)  # only the requester sees it
            return
        if parsed.private:
            await ack(text="⏳ Summarizing… only you will see the result.")
        else:
            await ack()
        tasks.spawn(summaries.run(parsed, teller(respond)), name=f"slack-summary:{parsed.channel}")
