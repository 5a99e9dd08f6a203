"""ReplyStreamer: the core decides when a reply becomes visible; the port decides how.

The token loop only calls push(), which never awaits. A single writer task per
reply coalesces whatever arrived since the last write, waits for the message's
minimum edit gap and the shared bucket, then performs exactly one platform write.
Before its first post a reply waits for a live slot in the bucket (see core.pacing),
so a crowded workspace shows fewer replies growing smoothly rather than many frozen;
a reply that completes while waiting is posted whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.pacing import Clock, Sleep, WriteBudgets
from core.ports import ChatPort, new_nonce
from core.reply_notes import plain_reason
from core.splitting import balance, fits, take_part
from core.types import ThreadKey

log = logging.getLogger(__name__)

MAX_WRITE_ATTEMPTS = 3


@dataclass
class _Part:
    text: str = ""
    frozen: bool = False  # no more text will be added
    id: str | None = None
    shown: str | None = None  # what the platform shows now
    closed: bool = False  # finish() was written
    last_write: float = float("-inf")
    # One per message, kept across retries: a post whose answer was lost is not doubled.
    nonce: str = field(default_factory=new_nonce)


Progress = Callable[[list[str], str], Awaitable[None]]
# Asked right before every platform write; False stops the reply for good (the turn
# lost its thread to another process, see core.store.lease).
MayWrite = Callable[[], Awaitable[bool]]
# Awaited once, before the first platform write (see core.status).
BeforeFirstWrite = Callable[[], Awaitable[None]]


class _Stopped(Exception):
    """The guard refused a write: nothing more is written."""


class _Failed(Exception):
    """The platform kept refusing a write the reply cannot go on without."""


class ReplyStreamer:
    def __init__(
        self,
        port: ChatPort,
        key: ThreadKey,
        budgets: WriteBudgets,
        *,
        reply_to: str | None = None,
        on_progress: Progress | None = None,
        may_write: MayWrite | None = None,
        before_first_write: BeforeFirstWrite | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._port = port
        self._key = key
        self._budgets = budgets
        self._limits = port.limits(key)
        self._max_chars = self._limits.max_chars
        self._reply_to = reply_to
        self._on_progress = on_progress
        self._may_write = may_write
        self._before_first_write = before_first_write
        self.stopped = False  # the guard refused a write; nothing more was written
        # Why the platform would not take the reply (a post, or its last message's
        # final text, failed every attempt); nothing more was written. None if it did.
        self.failed: str | None = None
        self._clock = clock
        self._sleep = sleep
        self._parts: list[_Part] = [_Part()]
        self._source = ""  # text of the live part not yet cut off, without carry
        self._carry = ""  # reopened fence the live part starts with
        self._text: list[str] = []
        self._dirty = asyncio.Event()
        self._settled = asyncio.Event()  # the part waiting for a live slot is complete
        self._slot: str | None = None  # bucket whose live slot this reply holds
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        self.first_visible_at: float | None = None

    @property
    def text(self) -> str:
        """Everything pushed so far."""
        return "".join(self._text)

    @property
    def ended(self) -> bool:
        """Nothing more will be written: the guard stopped it or the platform refused it."""
        return self.stopped or self.failed is not None

    @property
    def message_ids(self) -> list[str]:
        return [p.id for p in self._parts if p.id is not None]

    @property
    def last_shown(self) -> str:
        """What the reply's last posted message shows now ("" before the first post)."""
        shown = [p.shown or "" for p in self._parts if p.id is not None]
        return shown[-1] if shown else ""

    def push(self, delta: str) -> None:
        """Add text; never blocks and never awaits a platform write."""
        if not delta:
            return
        self._text.append(delta)
        self._source += delta
        limit = self._max_chars
        # The live part is shown with an open fence closed: that must fit too.
        while not fits(self._carry + self._source, limit):
            cut = take_part(self._source, limit, self._carry)
            live = self._parts[-1]
            live.text, live.frozen = cut.part, True
            self._settled.set()
            self._parts.append(_Part())
            self._source, self._carry = cut.rest, cut.carry
        self._parts[-1].text = self._carry + self._source
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"streamer:{self._key}")

    async def finish(self) -> list[str]:
        """Write everything that is left, close every part, return the message ids."""
        self._closing = True
        for part in self._parts:
            part.frozen = True
        self._settled.set()
        if self._parts[-1].text.strip() == "" and len(self._parts) > 1:
            self._parts.pop()
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"streamer:{self._key}")
        await self._task
        return self.message_ids

    async def aclose(self) -> None:
        """Stop writing at once (shutdown); nothing more is shown."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the writer task ---------------------------------------------------------

    def _next(self) -> tuple[_Part, str] | None:
        """The next write worth a platform call, oldest part first."""
        for part in self._parts:
            display = part.text if part.frozen else balance(part.text)
            if part.id is None:
                if display.strip():
                    return part, "post"
                if part.frozen and self._closing and part is self._parts[-1]:
                    return None
                continue
            if part.frozen and not part.closed:
                return part, "finish"
            if not part.frozen and display != part.shown:
                return part, "edit"
        return None

    async def _run(self) -> None:
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                while (job := self._next()) is not None:
                    part, kind = job
                    await self._write(part, kind)
                if self._closing and self._next() is None:
                    return
        except _Stopped:
            self.stopped = True
        except _Failed as exc:
            self.failed = str(exc)
            log.warning("gave up the reply in %s: %s", self._key, exc)
        finally:
            self._release_slot()

    # -- live slots ----------------------------------------------------------------

    async def _go_live(self, part: _Part) -> None:
        """Before a growing part is first shown: hold a live slot, or wait for one
        until the part is complete (then it is posted whole and needs none)."""
        if self._slot is not None or part.frozen:
            return
        self._settled.clear()  # only this part (the last) can freeze from here on
        self._slot = self._limits.bucket  # set first: a cancelled wait still releases
        if not await self._budgets.admit(self._limits, self, self._settled):
            self._slot = None

    def _follow_bucket(self) -> None:
        """Pacing may move a shown reply to another bucket (Slack: a native stream)."""
        self._limits = self._port.limits(self._key)
        if self._slot is not None and self._slot != self._limits.bucket and not self._closing:
            self._budgets.release(self._slot, self)
            self._budgets.hold(self._limits, self)
            self._slot = self._limits.bucket

    def _release_slot(self) -> None:
        if self._slot is not None:
            self._budgets.release(self._slot, self)
            self._slot = None

    async def _write(self, part: _Part, kind: str) -> None:
        # Pacing may change mid-reply (a native stream opened, or fell back to edits);
        # the part size stays what the reply started with.
        self._follow_bucket()
        if kind == "post":
            await self._go_live(part)
        wait = part.last_write + self._limits.min_edit_gap_s - self._clock()
        if wait > 0 and not (kind == "finish" and part.shown == part.text):
            await self._sleep(wait)
        if self._before_first_write is not None:
            await self._before_first_write()
            self._before_first_write = None
        display = part.text if part.frozen else balance(part.text)
        step = kind
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            try:
                if step == "post" and self._limits.post_bucket is not None:
                    await self._budgets.acquire_post(self._limits)
                elif not (step == "finish" and part.shown == part.text):
                    await self._budgets.acquire(self._limits)
                if self._may_write is not None and not await self._may_write():
                    raise _Stopped
                # Read the text only now: whatever arrived while we waited goes out too.
                display = part.text if part.frozen else balance(part.text)
                display = await self._call(part, step, display)
                break
            except (asyncio.CancelledError, _Stopped):
                raise
            except Exception as exc:  # a platform failure must not kill the reply
                if step == "post" and part.id is not None:
                    # The post went out but its finish failed: only finish it again, as
                    # posting once more would leave a second, half-written copy.
                    step = "finish"
                log.warning(
                    "platform %s failed for %s (attempt %d/%d): %s",
                    step, self._key, attempt, MAX_WRITE_ATTEMPTS, exc,
                )
                if attempt == MAX_WRITE_ATTEMPTS:
                    if step == "post" or (step == "finish" and part is self._parts[-1]):
                        # Nothing can follow a message that was never posted, nor fix the
                        # reply's end: retrying forever held the thread and the live slot.
                        raise _Failed(f"{step} failed: {plain_reason(exc)}") from exc
                    # An earlier part, or an edit: the next write carries newer text.
                    part.closed = part.closed or step == "finish"
                    part.shown = display
                    return
                await self._sleep(min(4.0, 0.5 * 2**attempt))
        part.shown = display
        part.last_write = self._clock()
        if self.first_visible_at is None:
            self.first_visible_at = part.last_write
        if self._on_progress is not None:
            try:
                await self._on_progress(self.message_ids, self.text)
            except Exception as exc:  # bookkeeping must never stop the visible reply
                log.warning("progress callback failed for %s: %s", self._key, exc)

    async def _call(self, part: _Part, kind: str, display: str) -> str:
        """Perform one write; return the text the platform shows afterwards."""
        if kind == "post":
            previous = [p.id for p in self._parts if p.id is not None]
            reply_to = previous[-1] if previous else self._reply_to
            part.id = await self._port.post(
                self._key, display, reply_to=reply_to, final=part.frozen, nonce=part.nonce
            )
            part.shown = display
            self.writes += 1
            if part.frozen:
                # The part may have been frozen (and grown) while the post was in flight.
                final = part.text
                if final != display:  # a real second write: it needs its own budget
                    await self._budgets.acquire(self._limits)
                    self.writes += 1
                await self._port.finish(self._key, part.id, final)
                part.closed = True
                return final
        elif kind == "edit":
            assert part.id is not None
            await self._port.edit(self._key, part.id, display)
            self.writes += 1
        else:
            assert part.id is not None
            await self._port.finish(self._key, part.id, display)
            if part.shown != display:
                self.writes += 1
            part.closed = True
        return display
