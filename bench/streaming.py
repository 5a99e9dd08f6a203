"""Sections 1-3: overhead, freshness and writes, for our streamer and the baselines.

One run = one strategy answering N conversations that start together (T turns each),
on fresh emulators and a fresh paced model. Times come from the model's stamps
(request arrival, each word's departure) and the emulator's record of when each word
first became visible, so nothing is measured inside the code under test.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.baseline_bots import baseline_discord_bot, baseline_slack_app
from bench.baselines import ChatGptInSlackStyle, Failures, LlmcordStyle, Strategy
from bench.ours import RereadingService, our_slack_bot
from bench.paced_model import PacedModel, question_tag, reply_prefix, reply_words
from bench.visibility import DiscordVisibility, Visibility, VisibleSlack
from tests.fakes.discord_harness import start_bot
from tests.fakes.discord_server import DiscordServer

OURS = "threadwise"
LLMCORD = "llmcord-style"
CIS = "ChatGPT-in-Slack-style"
REREAD = "re-read thread"
STREAMERS = (OURS, LLMCORD, CIS)
SLACK_CHANNELS = tuple(f"C0BENCH{i}" for i in range(5))
DISTINCT_PEOPLE = 10  # see README: more first-time people add users.info pacing
THINK_S = 1.0  # a person reads the answer before the next turn
GIVE_UP_AFTER_S = 2.0  # a bot with nothing running this long after the event is done


@dataclass(frozen=True)
class Workload:
    ttft_s: float = 0.4
    tokens_per_s: float = 60.0
    reply_tokens: int = 180
    timeout_s: float = 180.0  # per reply; beyond it the reply counts as incomplete


@dataclass
class RunResult:
    platform: str
    strategy: str
    conversations: int
    turns: int
    overhead: list[float] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)
    replies: int = 0
    incomplete: int = 0
    writes: int = 0
    rate_limited: int = 0
    reads: int = 0
    regressions: int = 0
    failures: int = 0
    wall_s: float = 0.0

    @property
    def writes_per_reply(self) -> float:
        return self.writes / self.replies if self.replies else float("nan")


def merged(runs: list[RunResult]) -> RunResult:
    """Independent trials of one scenario as one result (samples pooled, counts summed)."""
    first = runs[0]
    out = RunResult(first.platform, first.strategy, first.conversations, first.turns)
    for run in runs:
        out.overhead += run.overhead
        out.freshness += run.freshness
        for name in ("replies", "incomplete", "writes", "rate_limited", "reads",
                     "regressions", "failures"):
            setattr(out, name, getattr(out, name) + getattr(run, name))
        out.wall_s += run.wall_s
    return out


@dataclass
class _Front:
    url: str
    idle: Callable[[], Awaitable[None]]
    failures: Callable[[], int]
    busy: Callable[[], int]  # replies being worked on


def measure(
    result: RunResult, prefixes: list[str], events: dict[str, float], model: PacedModel,
    visible: Visibility,
) -> None:
    """Fill overhead, freshness and incomplete from the stamps and the visibility record."""
    stamps = model.stamps
    for prefix in prefixes:
        words = [f"{prefix}w{i}" for i in range(model.reply_tokens)]
        first_seen = visible.seen.get(words[0])
        if first_seen is not None and prefix in stamps.first_word and prefix in events:
            ttft = stamps.first_word[prefix] - stamps.requested[prefix]
            result.overhead.append(first_seen - events[prefix] - ttft)
        gaps: list[float] = []
        for word in words:
            emitted, seen = stamps.emitted.get(word), visible.seen.get(word)
            # A word that never showed (or was never asked for) was never fresh.
            gaps.append(math.inf if emitted is None or seen is None else seen - emitted)
        result.freshness.append(max(gaps))
        result.incomplete += math.isinf(max(gaps))
    result.replies = len(prefixes)
    result.regressions = visible.regressions


async def _settle() -> None:
    await asyncio.sleep(0.2)


def _always_busy() -> int:
    """Our Discord bot always finishes its replies: wait for the last word, not for idleness."""
    return 1


async def _until(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@asynccontextmanager
async def _paced_model(work: Workload) -> AsyncIterator[PacedModel]:
    model = PacedModel(ttft_s=work.ttft_s, tokens_per_s=work.tokens_per_s,
                       reply_tokens=work.reply_tokens)
    await model.start()
    try:
        yield model
    finally:
        await model.stop()


def _baseline(strategy: str, failures: Failures) -> Strategy:
    return LlmcordStyle(failures) if strategy == LLMCORD else ChatGptInSlackStyle(failures)


# --- Slack -------------------------------------------------------------------------------


@asynccontextmanager
async def _slack_front(
    strategy: str, slack: VisibleSlack, model: PacedModel, workdir: Path
) -> AsyncIterator[_Front]:
    if strategy in (OURS, REREAD):
        async with our_slack_bot(slack, model, workdir, reread=strategy == REREAD) as bot:
            service = bot.service

            def read_failures() -> int:
                return service.read_failures if isinstance(service, RereadingService) else 0

            yield _Front(bot.url, bot.idle, read_failures, lambda: len(bot.tasks))
    else:
        failures = Failures()
        async with baseline_slack_app(slack, model.base_url, _baseline(strategy, failures)) as (
            url, tasks,
        ):
            yield _Front(url, tasks.drain, lambda: failures.count, lambda: len(tasks))


async def run_slack(
    strategy: str, conversations: int, work: Workload, workdir: Path, *, turns: int = 1
) -> RunResult:
    result = RunResult("Slack", strategy, conversations, turns)
    events: dict[str, float] = {}
    prefixes: list[str] = []
    slack = VisibleSlack()
    await slack.start()
    try:
        async with _paced_model(work) as model, _slack_front(strategy, slack, model,
                                                             workdir) as front:
            for n in range(min(conversations, DISTINCT_PEOPLE)):
                slack.add_user(f"U0BENCH{n:03d}", f"Person {n}")

            async def converse(i: int) -> None:
                channel = SLACK_CHANNELS[i % len(SLACK_CHANNELS)]
                user = f"U0BENCH{i % DISTINCT_PEOPLE:03d}"
                root: str | None = None
                for turn in range(turns):
                    prefix = reply_prefix(i, turn)
                    prefixes.append(prefix)
                    post = slack.user_post(channel, user,
                                           f"{slack.mention} question {question_tag(i, turn)}",
                                           thread_ts=root)
                    root = root or post.ts
                    events[prefix] = time.monotonic()
                    await asyncio.gather(*(slack.deliver(front.url, e) for e in post.events))
                    last = reply_words(i, turn, work.reply_tokens)[-1]
                    sent = time.monotonic()

                    def answered(word: str = last, since: float = sent) -> bool:
                        # Shown in full, or the bot gave up on it (a baseline's writes failed).
                        gave_up = time.monotonic() - since > GIVE_UP_AFTER_S and not front.busy()
                        return word in slack.visible.seen or gave_up

                    await _until(answered, work.timeout_s)
                    if last not in slack.visible.seen:
                        return
                    if turn + 1 < turns:
                        await asyncio.sleep(THINK_S)

            started = time.monotonic()
            await asyncio.gather(*(converse(i) for i in range(conversations)))
            await asyncio.wait_for(front.idle(), work.timeout_s)
            result.wall_s = time.monotonic() - started
            result.failures = front.failures()
            measure(result, prefixes, events, model, slack.visible)
    finally:
        await slack.close()
    result.writes = slack.writes
    result.rate_limited = slack.rate_limited_count
    result.reads = slack.read_calls()
    return result


# --- Discord -----------------------------------------------------------------------------


async def run_discord(
    strategy: str, conversations: int, work: Workload, workdir: Path
) -> RunResult:
    result = RunResult("Discord", strategy, conversations, 1)
    events: dict[str, float] = {}
    server = DiscordServer()
    await server.start()
    watcher = DiscordVisibility(server)
    failures = Failures()
    try:
        async with AsyncExitStack() as stack:
            model = await stack.enter_async_context(_paced_model(work))
            idle: Callable[[], Awaitable[None]] = _settle
            busy: Callable[[], int] = _always_busy
            if strategy == OURS:
                # Once the last word shows, the turn has nothing left to write.
                await stack.enter_async_context(
                    start_bot(server, model, workdir, DISCORD_USER_RATE_PER_MIN=0)
                )
            else:
                bot = await stack.enter_async_context(
                    baseline_discord_bot(server, model.base_url, _baseline(strategy, failures))
                )
                idle, busy = bot.replies.drain, bot.replies.__len__
            channel = server.channel_id()
            people = [server.add_user(f"person{i}").name for i in range(conversations)]

            async def converse(i: int) -> None:
                prefix = reply_prefix(i, 0)
                events[prefix] = time.monotonic()
                await server.user_says(channel, f"question {question_tag(i, 0)}",
                                       author=people[i])
                last = reply_words(i, 0, work.reply_tokens)[-1]
                sent = time.monotonic()

                def answered() -> bool:
                    gave_up = time.monotonic() - sent > GIVE_UP_AFTER_S and not busy()
                    return last in watcher.refresh().seen or gave_up

                await _until(answered, work.timeout_s)

            started = time.monotonic()
            await asyncio.gather(*(converse(i) for i in range(conversations)))
            await asyncio.wait_for(idle(), work.timeout_s)
            result.wall_s = time.monotonic() - started
            prefixes = [reply_prefix(i, 0) for i in range(conversations)]
            measure(result, prefixes, events, model, watcher.refresh())
    finally:
        await server.stop()
    result.failures = failures.count
    result.writes = watcher.writes
    result.rate_limited = watcher.rate_limited
    return result
