"""Section 4: how many concurrent streaming conversations one bot process sustains.

The bot runs alone in a child process (bench.capacity_child); this process hosts the
Slack emulator (with its rate limits switched off) and the paced model, and keeps
conversations arriving at a steady rate so that about N are streaming at any moment.
We ramp N until the median overhead doubles against N = 1.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.paced_model import PacedModel, question_tag, reply_prefix
from bench.postgres import fresh_database
from bench.stats import median
from bench.streaming import DISTINCT_PEOPLE, SLACK_CHANNELS, RunResult, Workload, measure
from bench.visibility import VisibleSlack
from tests.fakes.slack_rate import RateLimiter
from tests.pg import PgServer

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 60.0


class NoLimits(RateLimiter):
    """The emulator with Slack's rate tiers switched off (capacity measures the bot)."""

    def check(self, method: str, team: str, channel: str | None) -> int | None:
        return None


@dataclass
class Step:
    conversations: int
    result: RunResult
    bot_cpu_cores: float = math.nan
    bot_peak_rss_mb: float = math.nan
    harness_cpu_cores: float = math.nan
    samples: list[float] = field(default_factory=list)


async def _start_child(cfg: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.capacity_child", json.dumps(cfg), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), STARTUP_TIMEOUT_S)
    if not line.startswith(b"READY "):
        child.kill()
        raise RuntimeError(f"capacity bot did not start: {line!r}")
    return child, line.decode().split()[1]


async def _stop_child(child: asyncio.subprocess.Process, timeout_s: float) -> dict[str, float]:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(b"STOP\n")
    await child.stdin.drain()
    child.stdin.close()
    line = await asyncio.wait_for(child.stdout.readline(), timeout_s)
    await child.wait()
    stats: dict[str, float] = json.loads(line)
    return stats


async def run_step(
    conversations: int, work: Workload, *, arrivals: int, database_url: str | None = None
) -> Step:
    """`arrivals` conversations arriving every reply-duration / N. Those after the first N
    count (by then about N replies are streaming at any moment)."""
    result = RunResult("Slack", "threadwise", conversations, 1)
    duration = work.ttft_s + work.reply_tokens / work.tokens_per_s
    gap = duration / conversations
    slack = VisibleSlack()
    slack.limiter = NoLimits()
    model = PacedModel(ttft_s=work.ttft_s, tokens_per_s=work.tokens_per_s,
                       reply_tokens=work.reply_tokens)
    await slack.start()
    await model.start()
    events: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="threadwise-capacity-") as workdir:
            child, url = await _start_child({
                "model_url": model.base_url,
                "database_url": database_url or f"sqlite:///{Path(workdir) / 'threadwise.db'}",
                "bot_token": slack.cfg.bot_token, "slack_api_url": slack.api_url,
                "signing_secret": slack.signing_secret, "file_host": slack.file_host,
            })
            for n in range(DISTINCT_PEOPLE):
                slack.add_user(f"U0BENCH{n:03d}", f"Person {n}")
            cpu, wall = time.process_time(), time.monotonic()

            async def converse(i: int) -> None:
                post = slack.user_post(SLACK_CHANNELS[i % len(SLACK_CHANNELS)],
                                       f"U0BENCH{i % DISTINCT_PEOPLE:03d}",
                                       f"{slack.mention} question {question_tag(i, 0)}")
                events[reply_prefix(i, 0)] = time.monotonic()
                await asyncio.gather(*(slack.deliver(url, e) for e in post.events))

            pending = []
            for i in range(arrivals):
                pending.append(asyncio.create_task(converse(i)))
                await asyncio.sleep(max(0.0, wall + (i + 1) * gap - time.monotonic()))
            await asyncio.gather(*pending)
            stats = await _stop_child(child, work.timeout_s)
            harness_cpu = (time.process_time() - cpu) / (time.monotonic() - wall)
    finally:
        await model.stop()
        await slack.close()
    counted = [reply_prefix(i, 0) for i in range(min(conversations, arrivals // 2), arrivals)]
    measure(result, counted, events, model, slack.visible)
    step = Step(conversations, result, stats["cpu_s"] / stats["wall_s"], stats["max_rss_mb"],
                harness_cpu)
    step.samples = result.overhead
    return step


async def ramp(
    levels: list[int], work: Workload, *, min_arrivals: int = 8,
    postgres: PgServer | None = None,
) -> list[Step]:
    """Run each level until the median overhead is at least twice the first level's.

    With `postgres`, the bot's store is a fresh PostgreSQL schema per level (else SQLite).
    """
    steps: list[Step] = []
    for level in levels:
        arrivals = max(min_arrivals, 2 * level)  # level 1: 7 measured replies in a row
        if postgres is None:
            step = await run_step(level, work, arrivals=arrivals)
        else:
            async with fresh_database(postgres) as url:
                step = await run_step(level, work, arrivals=arrivals, database_url=url)
        steps.append(step)
        base = median(steps[0].samples)
        if len(steps) > 1 and median(step.samples) >= 2 * base:
            break
        if step.result.incomplete:
            break
    return steps


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
