"""ReplyStreamer when the platform keeps failing: each message is posted once, and a
reply the platform will not take ends instead of retrying forever (virtual clock)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from core.pacing import WriteBudgets
from core.streaming import MAX_WRITE_ATTEMPTS
from core.types import ThreadKey
from tests.fakeclock import FakeClock
from tests.test_streaming import RecordingPort, feed, make


@dataclass
class FlakyPort(RecordingPort):
    """Posts take a while (the model keeps streaming meanwhile); the first
    `post_failures` posts and `finish_failures` closing writes fail, like a brief 503."""

    post_failures: int = 0
    finish_failures: int = 0

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        if self.post_failures:
            self.post_failures -= 1
            raise RuntimeError("chat.postMessage: internal_error (HTTP 503)")
        mid = await super().post(key, markdown, reply_to=reply_to, final=final)
        await self.clock.sleep(0.5)
        return mid

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self.finish_failures:
            self.finish_failures -= 1
            raise RuntimeError("chat.update: internal_error (HTTP 503)")
        await super().finish(key, message_id, markdown)


async def test_a_failed_closing_write_after_a_post_does_not_post_the_reply_twice() -> None:
    clock = FakeClock()
    port = FlakyPort(clock, finish_failures=1)
    streamer = make(port, clock)
    streamer.push("Hello, ")
    await clock.sleep(0.1)  # the first post is in flight
    streamer.push("world.")  # and the model finishes meanwhile
    ids = await streamer.finish()
    assert port.messages == {"m1": "Hello, world."}
    assert ids == ["m1"]
    assert [kind for _, kind, _, _ in port.writes] == ["post", "finish"]


async def test_a_post_that_went_out_on_its_last_attempt_lets_the_reply_go_on() -> None:
    """The part filled up while that post was in flight and its closing write failed:
    a failed finish of an earlier part (the next part follows), not a failed post."""
    clock = FakeClock()
    port = FlakyPort(clock, max_chars=300, post_failures=2, finish_failures=1)
    streamer = make(port, clock)
    words = [f"w{i} " for i in range(100)]
    streamer.push("".join(words[:30]))
    await clock.sleep(3.2)  # two failed posts, 1 s and 2 s apart; the third is in flight
    streamer.push("".join(words[30:]))  # the first part fills up meanwhile
    ids = await streamer.finish()
    assert streamer.failed is None
    assert ids == ["m1", "m2"]
    assert port.messages["m2"].split()[-1] == "w99"


@dataclass
class RefusingPort(RecordingPort):
    """The thread was deleted or archived, or the bot lost its permission there: every
    post (and, with `refuse_updates`, every edit and finish) fails."""

    refuse_updates: bool = False
    refused: int = 0

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        if not self.refuse_updates:
            self._refuse()
        return await super().post(key, markdown, reply_to=reply_to, final=final)

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        self._refuse()

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        self._refuse()

    def _refuse(self) -> None:
        self.refused += 1
        raise RuntimeError("is_archived\nresponse body: {...}")


async def test_a_reply_the_platform_will_not_post_ends_and_frees_its_live_slot() -> None:
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)
    # 0.5 writes/s keep one reply fresh: the refused reply holds the only live slot.
    refusing = RefusingPort(clock, max_chars=10_000, rate=0.5)
    working = RecordingPort(clock, max_chars=10_000, rate=0.5)
    refused, other = make(refusing, clock, budgets), make(working, clock, budgets)
    start = clock.now
    refused.push("Let me think ")  # still growing: it takes the live slot to be posted
    words = [f"w{i} " for i in range(500)]  # 10 s of streaming in the same bucket
    await feed(other, clock, words, 0.02)
    assert working.writes, "the other reply went live while still growing"
    assert working.writes[0][3] != "".join(words)
    async with asyncio.timeout(10):  # it used to retry the post once a second forever
        assert await refused.finish() == []
    await other.finish()
    assert refusing.refused == MAX_WRITE_ATTEMPTS
    assert refused.failed == "post failed: is_archived"
    assert not refused.stopped
    assert clock.now - start < 60


async def test_a_reply_whose_end_cannot_be_written_is_reported_failed() -> None:
    clock = FakeClock()
    port = RefusingPort(clock, refuse_updates=True)  # archived right after the first post
    streamer = make(port, clock)
    await feed(streamer, clock, [f"w{i} " for i in range(100)], 0.02)
    async with asyncio.timeout(10):
        assert await streamer.finish() == ["m1"]
    assert port.messages["m1"] != streamer.text, "the message kept its early text"
    assert streamer.failed == "finish failed: is_archived"
    assert port.refused <= 2 * MAX_WRITE_ATTEMPTS, "one round of edits, one of finishes"
