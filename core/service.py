"""ConversationService: a turn is dedupe → lease → history → media → context → model → stream
→ persist."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from core.context import assemble
from core.ingest import ingest
from core.media import MediaLimits
from core.metrics import Metrics
from core.model.errors import operator_hint
from core.model.types import (
    Finished,
    ModelClient,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolRound,
    UsageReport,
)
from core.orphans import OrphanSweeper, finalise_orphans, open_turn
from core.pacing import WriteBudgets
from core.ports import ChatPort, Lease, StaleLease, Store
from core.reply_notes import failure_marker, finish_note, note_unsaved, plain_reason
from core.reply_record import FinalState, ReplyRecord
from core.settings import Settings
from core.status import StatusIndicator, best_effort
from core.streaming import ReplyStreamer
from core.tokens import Tokenizer
from core.types import (
    Inbound,
    MessageStatus,
    NewMessage,
    StoredMessage,
    ThreadKey,
    ToolExchange,
    Usage,
)
from core.unsaved import UnsavedReplies

log = logging.getLogger(__name__)

DEDUPE_TTL_S = 24 * 3600
THINKING = "is thinking…"


@dataclass
class TurnOutcome:
    """What one turn did; returned for tests and metrics."""

    status: str  # "answered" | "failed" | "duplicate" | "ignored" | "superseded"
    message_ids: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)


class ConversationService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        model: ModelClient,
        metrics: Metrics | None = None,
        tokenizer: Tokenizer | None = None,
        budgets: WriteBudgets | None = None,
        unsaved: UnsavedReplies | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.model = model
        self.metrics = metrics or Metrics()
        self.tokenizer = tokenizer or Tokenizer()
        self.budgets = budgets or WriteBudgets()
        self.media_limits = MediaLimits(max_input_bytes=settings.max_file_bytes)
        self.unsaved = unsaved or UnsavedReplies()
        self.orphans = OrphanSweeper(
            store, lease_name=thread_lease, lease_ttl_s=settings.lease_ttl_s,
            every_s=settings.orphan_sweep_s, unsaved=self.unsaved,
        )

    # -- public API used by adapters ------------------------------------------------

    async def handle(self, inbound: Inbound, port: ChatPort) -> TurnOutcome:
        """Answer one inbound message in its thread. Never raises: failures are shown."""
        key = inbound.key
        try:
            if not inbound.addressed and not await self.knows_thread(key):
                return TurnOutcome("ignored")
        except Exception:
            # The store is down, so we cannot tell whether this thread is ours: post
            # nothing (an error in a stranger's thread would be worse than silence).
            log.exception("could not tell whether the bot is part of %s", key)
            self.metrics.turns.labels(key.platform, "failed").inc()
            return TurnOutcome("failed")
        idem = f"msg:{key.platform}:{key.space}:{key.channel}:{inbound.message_id}"
        try:
            # Dedupe before the lock: a retried delivery must not queue behind the turn.
            if not await self.store.first_sighting(idem, DEDUPE_TTL_S):
                log.info("duplicate delivery of %s in %s ignored", inbound.message_id, key)
                self.metrics.turns.labels(key.platform, "duplicate").inc()
                return TurnOutcome("duplicate")
            async with self.store.lease(thread_lease(key), self.settings.lease_ttl_s) as lease:
                await finalise_orphans(self.store, key, port, self.unsaved)
                outcome = await self._turn(inbound, port, lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("turn failed in %s", key)
            outcome = TurnOutcome("failed")
            await self._show_failure(port, inbound, plain_reason(exc))
        self.metrics.turns.labels(key.platform, outcome.status).inc()
        return outcome

    async def knows_thread(self, key: ThreadKey) -> bool:
        """True when the bot is part of this thread (follow-ups need no mention), or is
        answering its first question there right now (possibly in another process)."""
        history = await self.store.load_thread(key)
        if any(m.role == "assistant" for m in history):
            return True
        # Its first turn may still be fetching attachments, before anything is stored.
        return await self.store.lease_held(thread_lease(key))

    async def resolve_key(self, platform: str, channel: str, platform_id: str) -> ThreadKey | None:
        """The thread a stored message belongs to (Discord reply chains)."""
        found = await self.store.locate(platform, channel, platform_id)
        return found.key if found else None

    async def reset(self, key: ThreadKey) -> None:
        await self.store.reset_thread(key)

    async def remember(self, name: str, value: str | None) -> None:
        """Keep a small named choice across restarts (an adapter's settings)."""
        await self.store.put_setting(name, value)

    async def remembered(self, prefix: str) -> dict[str, str]:
        return await self.store.settings(prefix)

    async def usage(
        self, *, since: float, channel: str | None = None, user_id: str | None = None
    ) -> Usage:
        return await self.store.usage_since(since=since, channel=channel, user_id=user_id)

    async def run_orphan_sweeper(
        self, port: ChatPort, *, platform: str, owns: Callable[[ThreadKey], bool] | None = None
    ) -> None:
        """Finalise replies dead processes left streaming, at start-up and every
        THREADWISE_ORPHAN_SWEEP_S, until cancelled (adapters run it as a task)."""
        await self.orphans.run(port, platform=platform, owns=owns)

    # -- one turn -----------------------------------------------------------------

    async def _turn(self, inbound: Inbound, port: ChatPort, lease: Lease) -> TurnOutcome:
        key = inbound.key
        started = time.monotonic()
        history = await self.store.load_thread(key)
        chain = _chain(history, await self._parent(key, inbound.reply_to, history))
        indicator = StatusIndicator(port, key)
        # Alongside the downloads and the model's first token, not before them.
        indicator.show(THINKING)
        try:
            user, reply = await open_turn(self.store, _question(inbound, chain), lease.token)
            try:
                request, notes = await self._prepare(inbound, port, chain, user, lease)
            except StaleLease:
                # Stalled past the lease while reading files: the thread's new holder has
                # told the user already (its orphan notice), so say nothing more.
                log.warning("stopped the turn in %s: this process lost the thread's lease "
                            "while reading its files", key)
                return TurnOutcome("superseded")
            except Exception:
                # handle() shows the failure; the reply row must not stay 'streaming', or
                # the next turn would take it for a restart's orphan and say so too.
                await self._give_up(reply.id, lease.token)
                raise
            return await self._answer(
                inbound, port, request, reply.id, lease, notes, indicator, started,
            )
        except asyncio.CancelledError:
            indicator.cancel()
            raise
        finally:
            await indicator.landed()  # nothing may clear it before it is set

    async def _prepare(
        self, inbound: Inbound, port: ChatPort, chain: Sequence[StoredMessage],
        user: StoredMessage, lease: Lease,
    ) -> tuple[ModelRequest, list[str]]:
        """Fetch the question's files, add them to it, and assemble the model request."""
        refs, media, notes = await ingest(
            inbound, port, self.store, self.settings, self.media_limits
        )
        if refs:
            await self.store.update(user.id, media=refs, lease_token=lease.token)
            user = replace(user, media=refs)
        for msg in chain:
            for ref in msg.media:
                if ref.sha256 not in media and (m := await self.store.get_media(ref.sha256)):
                    media[ref.sha256] = m
        assembled = assemble(
            instructions=self.settings.system_prompt,
            history=chain,
            newest=user,
            media=media,
            tokenizer=self.tokenizer,
            budget_tokens=self.settings.context_tokens,
            reserve_output_tokens=self.settings.model_max_completion_tokens or 8192,
            image_detail=self.settings.model_image_detail,
            cache_key=_cache_key(inbound.key),
            turn_context=_turn_context(inbound),
        )
        return assembled.request, [*notes, *assembled.notes]

    async def _give_up(self, reply_id: int, lease_token: str) -> None:
        try:
            await self.store.update(reply_id, status="failed", lease_token=lease_token)
        except StaleLease:
            pass  # the thread's new holder finalises it
        except Exception as exc:  # e.g. the database that failed the turn
            log.warning("could not mark reply %s failed (%s); will when the database is "
                        "back", reply_id, plain_reason(exc))
            self.unsaved.keep(reply_id, FinalState("failed"))

    async def _answer(
        self, inbound: Inbound, port: ChatPort, request: ModelRequest, reply_id: int,
        lease: Lease, notes: list[str], indicator: StatusIndicator, started: float,
    ) -> TurnOutcome:
        """Stream the model's reply into the thread and save it."""
        key = inbound.key
        record = ReplyRecord(self.store, reply_id, lease)
        streamer = ReplyStreamer(
            port, key, self.budgets, reply_to=inbound.message_id,
            on_progress=record.progress, may_write=lease.confirm,
            before_first_write=indicator.landed,
        )
        if notes:
            streamer.push("".join(f"_{n}_\n" for n in notes) + "\n")
        try:
            model_text, tools, usage, status = await self._run_model(request, streamer, lease)
        except asyncio.CancelledError:
            await streamer.aclose()  # shutdown: stop writing, give up its live slot
            await record.keep_shown(streamer.message_ids, streamer.text)
            raise
        except Exception as exc:  # anything but the model (which reports its own errors)
            log.exception("turn failed while streaming in %s", key)
            streamer.push(failure_marker(plain_reason(exc), partial=bool(streamer.text)))
            model_text, tools, usage = streamer.text, [], Usage()
            status = "failed"
        if lease.lost or streamer.stopped:
            return await self._superseded(key, streamer, inbound.author_id, usage)
        if streamer.first_visible_at is None and not streamer.text:
            await indicator.clear()
        try:
            ids = await streamer.finish()
        except asyncio.CancelledError:
            await record.keep_shown(streamer.message_ids, streamer.text)
            raise
        if streamer.failed is not None:
            log.warning("the platform would not take the reply in %s: %s", key, streamer.failed)
            status = "partial" if ids else "failed"
            if not ids:
                await indicator.clear()  # nothing was posted to replace it
        final = FinalState(status, model_text, tuple(ids), tuple(tools))
        saved = False
        try:
            await record.save(final)
            saved = True
            await self.store.record_usage(
                key, inbound.author_id, self.model.model, usage, time.time()
            )
        except StaleLease:
            return await self._superseded(key, streamer, inbound.author_id, usage)
        except Exception as exc:
            # The answer is already on screen: say there that it was not saved, rather
            # than post a second "couldn't answer" reply that contradicts it.
            log.exception("could not save the reply in %s", key)
            if not saved:  # its row is saved later, not taken for a restart's orphan
                self.unsaved.keep(reply_id, final)
            await best_effort(note_unsaved(port, key, streamer, plain_reason(exc)))
            return TurnOutcome("failed", ids, usage, notes)
        if tools:
            log.info("turn in %s used %d tool call(s)", key, len(tools))
        self.metrics.observe_usage(key, usage)
        self.metrics.turn_seconds.observe(time.monotonic() - started)
        return TurnOutcome(
            "answered" if status == "complete" else "failed", ids, usage, notes
        )

    async def _superseded(
        self, key: ThreadKey, streamer: ReplyStreamer, user_id: str, usage: Usage
    ) -> TurnOutcome:
        """This process lost the thread's lease (it stalled, or lost the database, for
        longer than the TTL). Whoever takes the thread over marks this reply interrupted,
        so write nothing more and save nothing that could overwrite that."""
        await streamer.aclose()
        log.warning(
            "stopped the reply in %s: this process lost the thread's lease (stalled or cut "
            "off from the database for over THREADWISE_LEASE_TTL_S, %.0f s), so another "
            "process may have taken the thread over", key, self.settings.lease_ttl_s,
        )
        try:  # the tokens were spent all the same
            await self.store.record_usage(key, user_id, self.model.model, usage, time.time())
        except Exception as exc:
            log.warning("could not record usage in %s: %s", key, plain_reason(exc))
        return TurnOutcome("superseded", streamer.message_ids, usage)

    async def _run_model(
        self, request: ModelRequest, streamer: ReplyStreamer, lease: Lease
    ) -> tuple[str, list[ToolExchange], Usage, MessageStatus]:
        text: list[str] = []
        tools: list[ToolExchange] = []
        usage = Usage()
        status: MessageStatus = "complete"
        finish: str | None = None
        try:
            async with aclosing(self.model.stream(request)) as events:
                async for event in events:
                    if lease.lost or streamer.ended:
                        break  # nothing more can be shown: stop paying for tokens
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                        streamer.push(event.text)
                    elif isinstance(event, ToolRound):
                        tools.extend(event.exchanges)
                    elif isinstance(event, UsageReport):
                        usage = usage + event.usage
                    elif isinstance(event, Finished):
                        finish = event.reason
        except ModelError as exc:
            hint = operator_hint(exc, self.settings.model_base_url, self.model.model)
            log.warning("model failed: %s%s", exc.reason, f" ({hint})" if hint else "")
            status = "partial" if text else "failed"
            streamer.push(failure_marker(exc.reason, partial=bool(text)))
        else:
            if not (lease.lost or streamer.ended):
                status = finish_note(streamer, "".join(text), finish)
        return "".join(text), tools, usage, status

    async def _parent(
        self, key: ThreadKey, reply_to: str | None, history: Sequence[StoredMessage]
    ) -> StoredMessage | None:
        if reply_to:
            found = await self.store.find(key, reply_to)
            if found is not None:
                return found
        return history[-1] if history else None

    async def _show_failure(self, port: ChatPort, inbound: Inbound, reason: str) -> None:
        try:
            await port.set_status(inbound.key, None)
            text = failure_marker(reason, partial=False)
            message_id = await port.post(inbound.key, text, reply_to=inbound.message_id)
            await port.finish(inbound.key, message_id, text)
        except Exception as exc:
            log.error("could not even report a failure in %s: %s", inbound.key, exc)


def _question(inbound: Inbound, chain: Sequence[StoredMessage]) -> NewMessage:
    """Stored without its files, which are added once fetched."""
    return NewMessage(
        key=inbound.key, role="user", author_id=inbound.author_id,
        author_name=inbound.author_name, text=inbound.text, platform_id=inbound.message_id,
        parent_id=chain[-1].id if chain else None,
    )


def thread_lease(key: ThreadKey) -> str:
    """The lease that serialises turns in one thread, across every process."""
    return f"thread:{key}"


def _chain(history: Sequence[StoredMessage], leaf: StoredMessage | None) -> list[StoredMessage]:
    """The branch ending at leaf, oldest first (reply chains may fork)."""
    if leaf is None:
        return []
    by_id = {m.id: m for m in history}
    chain: list[StoredMessage] = []
    node: StoredMessage | None = leaf
    while node is not None and len(chain) <= len(history):
        chain.append(node)
        node = by_id.get(node.parent_id) if node.parent_id is not None else None
    chain.reverse()
    return [m for m in chain if m.text or m.media or m.role == "user"]


def _cache_key(key: ThreadKey) -> str:
    return f"tw:{key.platform}:{key.channel}:{key.root}"[:64]


def _turn_context(inbound: Inbound) -> str:
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"(Current time: {now}. You are replying to {inbound.author_name}.)"
