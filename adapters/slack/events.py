"""From Slack events to core Inbound messages: which events to answer, and how.

Listeners only decide and schedule (Slack wants an answer within 3 s, retries
included); the turn itself runs in a tracked task. Slack fires both `message` and
`app_mention` for one post and retries deliveries; the core dedupes on the message
identity (team, channel, ts), and a small local memory avoids starting a second task
for a delivery we are already working on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from adapters.slack.history import SlackHistory
from adapters.slack.markup import mentions, to_markdown
from adapters.slack.not_enabled import NotEnabledNotice
from adapters.slack.port import SlackChatPort
from adapters.slack.shared_files import SharedFiles, SlackFile
from adapters.slack.thread_context import earlier_in_thread
from adapters.slack.users import DisplayNames
from core.channel_overrides import ChannelOverrides
from core.ports import ChatPort, Coordination
from core.types import FileRef, Inbound, ThreadKey

log = logging.getLogger(__name__)

Event = Mapping[str, Any]
# A person's post, one with files, and a thread reply also sent to the channel. (The
# bot's own broadcasts carry bot_id and are ignored before this is asked.)
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}


class Service(Protocol):
    async def handle(self, inbound: Inbound, port: ChatPort) -> object: ...

    async def knows_thread(self, key: ThreadKey) -> bool: ...

    @property
    def store(self) -> Coordination: ...


class TailoredServices(Protocol):
    """Services answering with another model or system prompt (core.profiles provides it)."""

    def get(self, *, model: str | None = None, system_prompt: str | None = None) -> Service: ...


@dataclass(frozen=True, slots=True)
class BotIdentity:
    user_id: str
    bot_id: str
    team_id: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with an event: nothing, answer, answer if the bot is in the thread, or
    say it is not enabled here (addressed outside SLACK_ALLOWED_CHANNELS)."""

    action: Literal["ignore", "answer", "follow", "refuse"]
    why: str = ""


CHANNEL_NOT_ALLOWED = "channel not allowed"
USER_NOT_ALLOWED = "user not allowed here"


def classify(
    event: Event, *, kind: str, me: BotIdentity, allowed_channels: tuple[str, ...],
    follow_threads: bool, overrides: ChannelOverrides | None = None,
) -> Decision:
    if event.get("bot_id") or event.get("subtype") == "bot_message" or event.get("bot_profile"):
        return Decision("ignore", "a bot wrote it")
    if event.get("user") in (None, me.user_id):
        return Decision("ignore", "no human author")
    if event.get("subtype") not in ANSWERED_SUBTYPES:
        return Decision("ignore", f"subtype {event.get('subtype')}")
    if not event.get("channel") or not event.get("ts"):
        return Decision("ignore", "malformed event: no channel or ts")
    channel = str(event.get("channel") or "")
    # Only someone who spoke to the bot (a mention, a DM) is told; chatter is not.
    addressed = kind == "app_mention" or event.get("channel_type") == "im"
    if allowed_channels and channel not in allowed_channels:
        return Decision("refuse" if addressed else "ignore", CHANNEL_NOT_ALLOWED)
    users = (overrides or ChannelOverrides()).slack_channel(channel).allowed_users
    if users is not None and event.get("user") not in users:
        return Decision("refuse" if addressed else "ignore", USER_NOT_ALLOWED)
    if kind == "app_mention":
        return Decision("answer")
    if event.get("channel_type") == "im":
        return Decision("answer")
    if mentions(str(event.get("text") or ""), me.user_id):
        return Decision("ignore", "app_mention answers it")
    thread_ts = event.get("thread_ts")
    if follow_threads and thread_ts and thread_ts != event.get("ts"):
        return Decision("follow")
    return Decision("ignore", "not addressed to the bot")


def thread_key(event: Event, team_id: str) -> ThreadKey:
    root = str(event.get("thread_ts") or event["ts"])
    return ThreadKey("slack", team_id, str(event["channel"]), root)


def file_refs(files: Iterable[SlackFile]) -> tuple[FileRef, ...]:
    """Attachments to fetch. One Slack did not give us a URL for (an id-only Slack
    Connect file files.info would not reveal) keeps an empty URL, so that fetching it
    is refused with a note in the reply rather than skipped without a word."""
    refs = []
    for f in files:
        if f.get("mode") in ("tombstone", "external"):
            continue
        url = f.get("url_private_download") or f.get("url_private") or ""
        size = f.get("size")
        refs.append(FileRef(
            id=str(f.get("id")), name=str(f.get("name") or f.get("title") or "an attached file"),
            url=str(url), declared_size=int(size) if isinstance(size, int) else None,
            declared_type=f.get("mimetype"),
        ))
    return tuple(refs)


class TaskKeeper:
    """Holds references to running turns (asyncio keeps only weak ones)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


class SlackEventHandler:
    def __init__(
        self, *, service: Service, port: SlackChatPort, names: DisplayNames,
        me: BotIdentity, allowed_channels: tuple[str, ...], follow_threads: bool,
        tasks: TaskKeeper, recent: int = 5000, notice: NotEnabledNotice | None = None,
        shared: SharedFiles | None = None, history: SlackHistory | None = None,
        overrides: ChannelOverrides | None = None, tailored: TailoredServices | None = None,
    ) -> None:
        self.service = service
        self.overrides = overrides or ChannelOverrides()
        self.tailored = tailored
        self.port = port
        self.names = names
        self.me = me
        self.allowed_channels = allowed_channels
        self.follow_threads = follow_threads
        self.tasks = tasks
        self.notice = notice
        self.shared = shared
        self.history = history  # reads a thread the bot is first mentioned in midway
        self._recent: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._recent_max = recent
        # Threads whose addressed message is being prepared here (names, files) before
        # the service stores anything: a follow-up meanwhile belongs to the bot too.
        self._addressing: Counter[ThreadKey] = Counter()

    def on_event(self, event: Event, kind: str, team_id: str | None = None) -> Decision:
        """Decide at once and schedule the work; returns the decision (for logs/tests)."""
        decision = classify(
            event, kind=kind, me=self.me, allowed_channels=self.allowed_channels,
            follow_threads=self.follow_threads, overrides=self.overrides,
        )
        if decision.action == "ignore":
            log.debug("ignoring %s event: %s", kind, decision.why)
            return decision
        team = team_id or self.me.team_id
        if decision.action == "refuse":
            key = thread_key(event, team)
            if self.notice is not None and self.notice.first_in(key):
                tell = self.notice.tell(key, for_user=decision.why == USER_NOT_ALLOWED)
                self.tasks.spawn(tell, name=f"slack-not-enabled:{key.root}")
            return decision
        identity = (team, str(event["channel"]), str(event["ts"]))
        if identity in self._recent:
            log.info("duplicate delivery of %s ignored", identity[2])
            return Decision("ignore", "duplicate delivery")
        self._recent[identity] = None
        while len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)
        key = thread_key(event, team)
        if decision.action == "answer":
            self._addressing[key] += 1
        self.tasks.spawn(self._answer(event, key, decision), name=f"slack-turn:{identity[2]}")
        return decision

    async def _answer(self, event: Event, key: ThreadKey, decision: Decision) -> None:
        team = key.space
        try:
            if (decision.action == "follow" and not self._addressing[key]
                    and not await self.service.knows_thread(key)):
                return
            user = str(event["user"])
            text = await to_markdown(
                str(event.get("text") or ""), bot_user_id=self.me.user_id, resolve=self.names.name
            )
            if decision.action == "answer":
                text = await self._said_before(event, key) + text
            files: list[SlackFile] = list(event.get("files") or ())
            if self.shared is not None:
                files = await self.shared.complete(files, team)
            inbound = Inbound(
                key=key, message_id=str(event["ts"]), author_id=user,
                author_name=await self.names.name(user), text=text, files=file_refs(files),
                addressed=True,
            )
            recipient_team = str(event.get("user_team") or event.get("team") or team)
            self.port.remember_requester(key, str(event["ts"]), user, recipient_team)
            await self.service_for(key.channel).handle(inbound, self.port)
        except asyncio.CancelledError:
            raise
        except Exception:  # the service never raises; this guards our own plumbing
            log.exception("could not hand a Slack event to the service")
        finally:
            if decision.action == "answer":
                self._addressing[key] -= 1
                if not self._addressing[key]:
                    del self._addressing[key]

    def service_for(self, channel: str) -> Service:
        """The service answering in `channel`: its THREADWISE_CONFIG model and system
        prompt, else the configured ones."""
        here = self.overrides.slack_channel(channel)
        if self.tailored is None:
            return self.service
        return self.tailored.get(model=here.model, system_prompt=here.system_prompt)

    async def _said_before(self, event: Event, key: ThreadKey) -> str:
        """For a mention inside a thread the bot has no history of (people talked first):
        what they said, quoted; else ""."""
        ts = str(event["ts"])
        if self.history is None or key.root == ts or await self.service.knows_thread(key):
            return ""
        return await earlier_in_thread(self.history, key.channel, key.root, ts)
