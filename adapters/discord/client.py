"""The Discord bot: gateway events in, conversation turns out through the core service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

import discord
from discord import app_commands

from adapters.discord.channels import ChannelResolver, Located
from adapters.discord.markup import speaker_name
from adapters.discord.models import ChannelResets, Keeper, ModelChoices
from adapters.discord.policy import CommunityPolicy, RefusalKind, Requester, requester_of
from adapters.discord.port import NO_PINGS, AttachmentIndex, DiscordPort, Remembered
from adapters.discord.request_budget import GLOBAL_RATE, RequestBudget, budget_trace
from adapters.discord.routing import Conversation, ConversationRouter, thread_key
from adapters.discord.settings import DiscordSettings
from core.channel_overrides import ChannelOverrides
from core.ports import ChatPort
from core.service import ConversationService
from core.settings import Settings
from core.summary_service import SummaryService
from core.types import Inbound, ThreadKey, Usage

log = logging.getLogger(__name__)

THREAD_NAME_CHARS = 90
THREAD_ALREADY_CREATED = 160004  # Discord: "A thread has already been created for this message"


class Conversations(Keeper, Protocol):
    """What the bot needs from the core (ConversationService provides it)."""

    async def handle(self, inbound: Inbound, port: ChatPort) -> object: ...

    async def resolve_key(
        self, platform: str, channel: str, platform_id: str
    ) -> ThreadKey | None: ...

    async def reset(self, key: ThreadKey) -> None: ...

    async def usage(
        self, *, since: float, channel: str | None = None, user_id: str | None = None
    ) -> Usage: ...


class TailoredServices(Protocol):
    """Services answering with another model or system prompt (core.profiles provides it)."""

    def get(
        self, *, model: str | None = None, system_prompt: str | None = None
    ) -> Conversations: ...


class ThreadwiseBot(discord.Client):
    def __init__(
        self,
        *,
        settings: Settings,
        discord_settings: DiscordSettings,
        service: Conversations,
        tailored: TailoredServices | None = None,
        overrides: ChannelOverrides | None = None,
        guild_ready_timeout: float = 2.0,
        summaries: SummaryService | None = None,
        request_rate: float = GLOBAL_RATE,
        **client_options: Any,
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: enable it in the Developer Portal
        self.requests = RequestBudget(request_rate)  # under Discord's global limit
        super().__init__(
            intents=intents, allowed_mentions=NO_PINGS, guild_ready_timeout=guild_ready_timeout,
            http_trace=budget_trace(self.requests), **client_options,
        )
        self.settings = settings
        self.discord_settings = discord_settings
        self.service = service
        self._tailored = tailored
        self.overrides = overrides or ChannelOverrides()
        self.tree = TrackedCommandTree(self)
        self.attachments = AttachmentIndex()
        self.port = DiscordPort(self, self.attachments)
        self.models = ModelChoices(
            settings.model_name, discord_settings.models, service, self.overrides
        )
        self.resets = ChannelResets(service)
        self.router = ConversationRouter(service, self.resets)
        self.channels = ChannelResolver()
        self.policy = CommunityPolicy(
            settings, discord_settings, self.overrides,
            lambda since, user_id: service.usage(since=since, user_id=user_id),
        )
        if summaries is None and isinstance(service, ConversationService):
            summaries = SummaryService.for_service(service)
        self.summaries = summaries  # /summarize is offered when set
        self._seen: Remembered[bool] = Remembered(4096)
        self._tasks: set[asyncio.Task[Any]] = set()  # turns and commands being answered
        self.draining = False  # stopping: nothing new is taken on

    # --- lifecycle -------------------------------------------------------------
    async def setup_hook(self) -> None:
        from adapters.discord.commands import register_commands

        register_commands(self)
        await self.models.load()
        await self.resets.load()
        if not self.syncs_commands:
            return
        synced = await self.tree.sync()
        log.info("synced %d application commands", len(synced))

    @property
    def syncs_commands(self) -> bool:
        """Global commands are one set per app: of several shard processes, only the
        one running shard 0 uploads them (all of them answer them)."""
        return True

    async def on_ready(self) -> None:
        user = self.user
        log.info("connected to Discord as %s in %d server(s)", user, len(self.guilds))

    def accepting(self) -> bool:
        """Connected and taking messages (/healthz): not while stopping."""
        return self.is_ready() and not self.draining

    async def drain(self, grace_s: float) -> None:
        """Stop taking messages and commands; wait up to grace_s for the replies being
        written. close() then cancels what is left: the core keeps what each showed, and
        the next start marks it interrupted."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                log.warning("stopping with %d reply(ies) still being written", len(self._tasks))
                return
            # asyncio.wait, not gather: running out of time must not cancel them here.
            await asyncio.wait(list(self._tasks), timeout=left)

    async def close(self) -> None:
        self.draining = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.port.aclose()
        await super().close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run work off the gateway loop; keep a reference so it is not collected."""
        self._track(asyncio.create_task(coro))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def take_command(self) -> bool:
        """Whether to run the slash command whose task is running this; tracked like a turn
        so a graceful stop lets it finish too. Refused while stopping: during a rolling
        deploy the other process answers it."""
        task = asyncio.current_task()
        if self.draining or task is None:
            return False
        self._track(task)
        return True

    def service_for(self, places: tuple[str, ...]) -> Conversations:
        """The service answering here: the model ModelChoices names for the channel (or a
        thread's parent), with the system prompt THREADWISE_CONFIG gives it."""
        if self._tailored is None:
            return self.service
        prompt = self.overrides.discord_places(places).system_prompt
        return self._tailored.get(model=self.models.effective(places), system_prompt=prompt)

    # --- messages ----------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.draining:
            return  # cheap early exit (the router checks bots again); stopping: take no more
        self.spawn(self._answer(message))

    async def _answer(self, message: discord.Message) -> None:
        # A resumed gateway may deliver a message again; the core dedupes turns on the message
        # id too, this only keeps a redelivery from counting against the user's rate limit.
        if str(message.id) in self._seen:
            return
        self._seen.remember(str(message.id), True)
        me = self.user
        if me is None:
            return
        try:
            channel = await self.channels.resolve(message.channel, message.guild)
            conversation = await self.router.route(message, me.id, channel)
            if conversation is None:
                return
            who = requester_of(message.author, channel, self.discord_settings)
            if not self.policy.admitted(who):
                return
            refusal = await self.refusal(who)
            if refusal is not None:
                kind, text = refusal
                # Once per window: a reply to every further message would be spam.
                if self.policy.should_warn(who, kind):
                    await self.port.post(conversation.key, text, reply_to=str(message.id))
                return
            await self._turn(message, channel, conversation, who)
        except Exception:
            log.exception("could not answer message %s", message.id)

    async def refusal(self, who: Requester) -> tuple[RefusalKind, str] | None:
        """Why and the friendly message, for a user over their rate or quota; else None."""
        too_fast = self.policy.take_request(who)
        if too_fast is not None:
            return "rate", too_fast
        over = await self.policy.over_quota(who)
        return ("quota", over) if over is not None else None

    async def _turn(
        self, message: discord.Message, channel: Located, conv: Conversation, who: Requester
    ) -> None:
        key, reply_to = conv.key, conv.reply_to
        if conv.new and self.discord_settings.auto_thread and isinstance(
            channel, discord.TextChannel
        ):
            key = await self._open_thread(message, conv)
        files = tuple(
            self.attachments.add(a) for a in (*message.attachments, *conv.quoted_files)
        )
        inbound = Inbound(
            key=key,
            message_id=str(message.id),
            author_id=str(message.author.id),
            author_name=speaker_name(message.author),
            text=conv.text,
            files=files,
            addressed=True,
            reply_to=reply_to,
            is_admin=who.is_admin,
        )
        await self.service_for((key.channel, *who.places)).handle(inbound, self.port)

    async def _open_thread(self, message: discord.Message, conv: Conversation) -> ThreadKey:
        """The thread to answer in (auto-thread), else the channel's conversation key.

        A thread opened from a message takes the message's id. So a message delivered twice
        (a RESUME replay, or two processes during a rolling deploy) gets the same key both
        times, and the core's dedupe recognises the second delivery.
        """
        guild = message.guild
        assert guild is not None  # conv.new: a guild text channel
        title = conv.text.splitlines()[0][:THREAD_NAME_CHARS] if conv.text.strip() else ""
        try:
            thread = await message.create_thread(
                name=title or f"Conversation with {speaker_name(message.author)}"
            )
        except discord.HTTPException as exc:
            if exc.code == THREAD_ALREADY_CREATED:
                return thread_key(guild.id, message.id)
            # e.g. no Create Public Threads permission: answer in the channel instead.
            log.warning("could not open a thread for %s: %s", message.id, exc)
            return conv.key
        return thread_key(guild.id, thread.id)


class TrackedCommandTree(app_commands.CommandTree[ThreadwiseBot]):
    """Slash commands run in tasks discord.py starts; the bot keeps track of them."""

    async def interaction_check(self, interaction: discord.Interaction[ThreadwiseBot], /) -> bool:
        return self.client.take_command()


class ShardedThreadwiseBot(ThreadwiseBot, discord.AutoShardedClient):
    """The same bot over discord.py's AutoShardedClient: it runs DISCORD_SHARD_IDS (all
    when unset) of DISCORD_SHARD_COUNT shards. Discord sends each server's events to
    shard (server_id >> 22) % count and DMs to shard 0; several shard processes share
    one PostgreSQL, so history, dedupe, thread leases and usage quotas are common."""

    @property
    def syncs_commands(self) -> bool:
        return not self.shard_ids or 0 in self.shard_ids


def build_bot(*, discord_settings: DiscordSettings, **options: Any) -> ThreadwiseBot:
    """ThreadwiseBot, or its sharded form when DISCORD_SHARD_COUNT is set."""
    if discord_settings.shard_count is None:
        return ThreadwiseBot(discord_settings=discord_settings, **options)
    count, ids = discord_settings.shard_count, discord_settings.shard_ids
    # Discord's global limit is the bot's, whatever the number of processes sharing it:
    # a process running some of the shards takes that share of it.
    share = len(ids) / count if ids else 1.0
    return ShardedThreadwiseBot(
        discord_settings=discord_settings, shard_count=count, shard_ids=list(ids) or None,
        request_rate=GLOBAL_RATE * share, **options,
    )
