"""ReplyStreamer pacing, splitting and final writes, on a virtual clock."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from core.pacing import WriteBudgets
from core.ports import WriteLimits
from core.splitting import split_all
from core.streaming import ReplyStreamer
from core.types import FileRef, ThreadKey
from tests.fakeclock import FakeClock

KEY = ThreadKey("test", "space", "chan", "root")


@dataclass
class RecordingPort:
    """A ChatPort that records writes with virtual timestamps."""

    clock: FakeClock
    max_chars: int = 2000
    gap: float = 1.0
    rate: float = 1.0
    burst: int = 1
    writes: list[tuple[float, str, str, str]] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    fail_next: int = 0

    def limits(self, key: ThreadKey) -> WriteLimits:
        return WriteLimits(self.max_chars, self.gap, f"b:{key.channel}", self.rate, self.burst)

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("platform down")
        mid = f"m{len(self.messages) + 1}"
        self._record("post", mid, markdown)
        return mid

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        self._record("edit", message_id, markdown)

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self.messages[message_id] != markdown:
            self._record("finish", message_id, markdown)

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        return None

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        raise NotImplementedError

    def _record(self, kind: str, mid: str, text: str) -> None:
        assert len(text) <= self.max_chars, f"{kind} of {len(text)} chars"
        self.messages[mid] = text
        self.writes.append((self.clock.now, kind, mid, text))


def make(
    port: RecordingPort, clock: FakeClock, budgets: WriteBudgets | None = None
) -> ReplyStreamer:
    budgets = budgets or WriteBudgets(clock=clock, sleep=clock.sleep)
    return ReplyStreamer(port, KEY, budgets, clock=clock, sleep=clock.sleep)


async def feed(streamer: ReplyStreamer, clock: FakeClock, chunks: list[str], every: float) -> None:
    for chunk in chunks:
        streamer.push(chunk)
        await clock.sleep(every)


async def test_edits_are_coalesced_and_paced_by_the_minimum_gap() -> None:
    clock = FakeClock()
    port = RecordingPort(clock)
    streamer = make(port, clock)
    words = [f"w{i} " for i in range(200)]  # 200 tokens at 50 tokens/s = 4 s of model time
    await feed(streamer, clock, words, 0.02)
    await streamer.finish()
    times = [t for t, *_ in port.writes]
    assert len(port.writes) < 20, "one write per token would be ~200 writes"
    assert all(b - a >= 0.999 for a, b in itertools.pairwise(times))
    assert port.messages["m1"].split() == "".join(words).split()


async def test_push_never_waits_for_the_platform() -> None:
    clock = FakeClock()
    port = RecordingPort(clock)
    streamer = make(port, clock)
    start = clock.now
    for i in range(1000):
        streamer.push(f"t{i} ")
    assert clock.now == start, "push() must not sleep or await"
    ids = await streamer.finish()
    shown = " ".join(port.messages[m] for m in ids).split()
    assert shown == [f"t{i}" for i in range(1000)]


async def test_final_text_is_always_written_even_right_after_an_edit() -> None:
    clock = FakeClock()
    port = RecordingPort(clock)
    streamer = make(port, clock)
    streamer.push("Hello")
    await clock.sleep(0)
    await clock.sleep(0)
    streamer.push(" world, and the end.")
    await streamer.finish()
    assert port.messages["m1"] == "Hello world, and the end."


async def test_long_reply_is_split_without_breaking_code_blocks() -> None:
    clock = FakeClock()
    port = RecordingPort(clock, max_chars=500)
    streamer = make(port, clock)
    code = "\n".join(f"print({i})  # a line of code" for i in range(60))
    text = "Here is the code:\n\n```python\n" + code + "\n```\n\nThat is all."
    for i in range(0, len(text), 7):
        streamer.push(text[i : i + 7])
        await clock.sleep(0.01)
    ids = await streamer.finish()
    assert len(ids) >= 4
    for mid in ids:
        shown = port.messages[mid]
        assert len(shown) <= 500
        assert shown.count("```") % 2 == 0, shown
    body = "".join(port.messages[m] for m in ids)
    assert "".join(body.split()).replace("```python", "").replace("```", "") == "".join(
        text.split()
    ).replace("```python", "").replace("```", "")


async def test_mid_stream_view_closes_an_open_fence() -> None:
    clock = FakeClock()
    port = RecordingPort(clock)
    streamer = make(port, clock)
    streamer.push("```python\nx = 1\n")
    await clock.sleep(0)
    await clock.sleep(0)
    assert port.writes, "the first text is posted at once"
    assert port.writes[0][3].count("```") == 2
    await streamer.finish()


async def test_concurrent_replies_share_one_bucket_fairly() -> None:
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)
    ports = [RecordingPort(clock, gap=0.0, rate=1.0, burst=1) for _ in range(3)]
    streamers = [make(p, clock, budgets) for p in ports]
    words = [f"w{i} " for i in range(300)]

    async def one(s: ReplyStreamer) -> None:
        await feed(s, clock, words, 0.02)
        await s.finish()

    await asyncio.gather(*(one(s) for s in streamers))
    times = sorted(t for p in ports for t, *_ in p.writes)
    # The bucket allows 1 write/s shared: no two writes of the bucket within 1 s.
    assert all(b - a >= 0.999 for a, b in itertools.pairwise(times))
    counts = [len(p.writes) for p in ports]
    assert max(counts) - min(counts) <= 2, counts
    for p in ports:
        assert p.messages["m1"].split() == "".join(words).split()


async def test_a_failed_write_is_retried() -> None:
    clock = FakeClock()
    port = RecordingPort(clock, fail_next=1)
    streamer = make(port, clock)
    streamer.push("still arrives")
    await streamer.finish()
    assert port.messages["m1"] == "still arrives"


def test_split_all_keeps_every_part_under_the_limit() -> None:
    text = ("word " * 900) + "\n```js\n" + ("let x = 1;\n" * 400) + "```\nend"
    parts = split_all(text, 2000)
    assert all(len(p) <= 2000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert "".join("".join(parts).split()).count("letx=1;") == 400


async def test_a_part_frozen_while_its_post_is_in_flight_keeps_all_its_text() -> None:
    """Regression: a burst that overflows a part during its first post lost text."""

    class SlowPort(RecordingPort):
        async def post(
            self, key: ThreadKey, markdown: str, *, reply_to: str | None = None,
            final: bool = False, nonce: str | None = None,
        ) -> str:
            mid = await super().post(key, markdown, reply_to=reply_to)
            await self.clock.sleep(0.5)  # the post is slow; the model keeps streaming meanwhile
            return mid

    clock = FakeClock()
    port = SlowPort(clock, max_chars=300, gap=0.05, rate=100.0, burst=100)
    streamer = make(port, clock)
    answer = "\n\n".join(f"Paragraph {i}: " + " ".join(f"t{i}_{j}" for j in range(20))
                         for i in range(30))
    for i in range(0, len(answer), 40):
        streamer.push(answer[i : i + 40])
        await asyncio.sleep(0)
    ids = await streamer.finish()
    shown = " ".join(port.messages[m] for m in ids)
    assert shown.split() == answer.split()



async def test_posts_can_skip_the_edit_bucket_when_the_platform_paces_them() -> None:
    """Slack: first posts use their own method tiers, so they never queue behind edits."""
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)

    class OwnPostTiers(RecordingPort):
        def limits(self, key: ThreadKey) -> WriteLimits:
            return WriteLimits(4000, 1.0, "slack:T1", 50 / 60, 1,
                               post_bucket="slack-post:T1", post_burst=10)

    ports = [OwnPostTiers(clock) for _ in range(10)]
    streamers = [make(p, clock, budgets) for p in ports]
    start = clock.now
    for s in streamers:
        s.push("Hello")
    await asyncio.gather(*(s.finish() for s in streamers))
    assert all(p.writes[0][0] - start < 0.01 for p in ports), "no first post waited"


async def _stream_then_finish(
    streamer: ReplyStreamer, clock: FakeClock, words: list[str], every: float
) -> None:
    await feed(streamer, clock, words, every)
    await streamer.finish()


async def test_a_crowded_bucket_shows_only_the_replies_it_can_keep_fresh() -> None:
    """1 write/s refreshes three live replies every 3 s; three more wait and are then
    posted whole in one write each, instead of six replies frozen mid-sentence."""
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)
    ports = [RecordingPort(clock, gap=0.0, rate=1.0, burst=1) for _ in range(6)]
    streamers = [make(p, clock, budgets) for p in ports]
    words = [f"w{i} " for i in range(200)]  # 4 s of streaming
    start = clock.now
    await asyncio.gather(*(_stream_then_finish(s, clock, words, 0.02) for s in streamers))

    full = "".join(words)
    live = [p for p in ports if p.writes[0][3] != full]
    waited = [p for p in ports if p.writes[0][3] == full]
    assert len(live) == 3
    assert all(p.writes[0][0] - start < 3.0 for p in live), "live replies show early words"
    for p in waited:
        assert [(kind, text) for _, kind, _, text in p.writes] == [("post", full)]
        assert p.writes[0][0] - start >= 4.0, "posted once complete"
    assert all(p.messages["m1"] == full for p in ports)


async def test_a_waiting_reply_goes_live_as_soon_as_a_slot_frees() -> None:
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)
    # 0.5 writes/s keep one reply fresh (a write every 2 s): one live slot.
    short, long = (RecordingPort(clock, max_chars=10_000, rate=0.5) for _ in range(2))
    quick = make(short, clock, budgets)
    slow = make(long, clock, budgets)
    words = [f"w{i} " for i in range(500)]  # 10 s of streaming
    start = clock.now
    await asyncio.gather(
        _stream_then_finish(quick, clock, words[:25], 0.02),
        _stream_then_finish(slow, clock, words, 0.02),
    )
    quick_done = short.writes[-1][0]
    first_post = long.writes[0]
    assert first_post[1] == "post"
    # The slot frees with the quick reply's last write; the post then needs one token
    # of the shared bucket (0.5/s), long before the slow reply completes at 10 s.
    assert quick_done < first_post[0] <= quick_done + 2.0 < start + 5.0
    assert first_post[3] != "".join(words), "shown while still growing"
    assert long.messages["m1"] == "".join(words)


async def test_a_post_that_queued_for_its_budget_carries_what_arrived_meanwhile() -> None:
    """Slack paces posts per channel: a post that had to wait must not go out with the
    text of the moment it started waiting, and then need an edit for the rest."""
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)

    class OwnPostBudget(RecordingPort):
        def limits(self, key: ThreadKey) -> WriteLimits:
            return WriteLimits(4000, 1.0, "edits", 10.0, 10,
                               post_bucket="posts", post_rate=1.0, post_burst=1)

    first, second = OwnPostBudget(clock), OwnPostBudget(clock)
    a, b = make(first, clock, budgets), make(second, clock, budgets)
    a.push("first reply")
    await clock.sleep(0)
    b.push("second ")
    await feed(b, clock, ["reply ", "keeps ", "growing"], 0.3)
    await asyncio.gather(a.finish(), b.finish())
    [(at, kind, _, text), *_] = second.writes
    assert kind == "post" and at >= 1.0, "it waited for the post budget"
    assert text == "second reply keeps growing"


async def test_a_reply_abandoned_while_waiting_does_not_keep_a_slot() -> None:
    clock = FakeClock()
    budgets = WriteBudgets(clock=clock, sleep=clock.sleep)
    first, dropped, third = (RecordingPort(clock, max_chars=10_000, rate=0.5) for _ in range(3))
    a, b, c = (make(p, clock, budgets) for p in (first, dropped, third))
    a.push("first ")
    b.push("dropped ")
    c.push("third ")
    await clock.sleep(1.0)
    assert first.writes and not dropped.writes and not third.writes  # one slot
    await b.aclose()  # e.g. shutdown cancelled that turn
    await a.finish()
    await feed(c, clock, [f"w{i} " for i in range(200)], 0.02)
    assert third.writes[0][3] != c.text, "the third reply went live before completing"
    await c.finish()
    assert not dropped.writes
    assert third.messages["m1"] == c.text


async def test_a_refused_write_stops_the_reply_for_good() -> None:
    clock = FakeClock()
    port = RecordingPort(clock)
    allowed = iter([True, True])  # the third write finds the thread taken over

    async def may_write() -> bool:
        return next(allowed, False)

    streamer = ReplyStreamer(
        port, KEY, WriteBudgets(clock=clock, sleep=clock.sleep), may_write=may_write,
        clock=clock, sleep=clock.sleep,
    )
    await feed(streamer, clock, [f"w{i} " for i in range(40)], every=0.1)
    assert await streamer.finish() == ["m1"]
    assert streamer.stopped
    assert [kind for _, kind, _, _ in port.writes] == ["post", "edit"]
    assert not port.messages["m1"].endswith("w39 "), "nothing after the refusal was shown"
