"""What a bench run does: the plan for each mode, the sections, and the printed report."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

from bench import report
from bench.capacity import Step, ramp
from bench.cost import run_cost
from bench.images import image_rows, synthetic_photo
from bench.postgres import NoPostgres, postgres_server
from bench.store import StoreResult, bench_postgres, bench_sqlite
from bench.streaming import (
    CIS,
    LLMCORD,
    OURS,
    REREAD,
    STREAMERS,
    RunResult,
    Workload,
    merged,
    run_discord,
    run_slack,
)
from tests.pg import PgServer

SECTIONS = ("streaming", "history", "capacity", "store", "cost", "images")
ALIASES = {"writes": "streaming", "overhead": "streaming", "freshness": "streaming"}


@dataclass(frozen=True)
class Plan:
    name: str
    slack: tuple[int, ...]
    discord: tuple[int, ...]
    history: tuple[tuple[int, int], ...]  # (conversations, turns each)
    capacity: tuple[int, ...]
    capacity_stores: tuple[str, ...]
    store_messages: int
    store_samples: int
    solo_trials: int = 1  # independent runs of a one-conversation scenario (one reply each)
    work: Workload = field(default_factory=Workload)

    @property
    def store_threads(self) -> int:
        return max(1, self.store_messages // 20)

    def trials(self, conversations: int) -> int:
        """One conversation is one reply: run it several times, on fresh emulators and
        budgets, so its median and p99 are over several replies."""
        return self.solo_trials if conversations == 1 else 1


SQLITE, POSTGRES = "SQLite", "PostgreSQL"
FULL = Plan("full", (1, 10, 50), (1, 3, 10), ((1, 3), (50, 1)), (1, 10, 25, 50, 100, 200),
            (SQLITE, POSTGRES), 1_000_000, 1000, solo_trials=5)
QUICK = Plan("quick", (1, 10), (1, 3), ((1, 3),), (1, 25, 50), (SQLITE,), 100_000, 300,
             solo_trials=3, work=Workload(reply_tokens=120))
SMOKE = Plan("smoke", (1,), (), ((1, 2),), (1, 5), (SQLITE,), 2_000, 50,
             work=Workload(reply_tokens=30))


@dataclass
class Results:
    plan: Plan
    started: str
    machine: str
    streaming: list[RunResult] = field(default_factory=list)
    history: list[tuple[RunResult, RunResult]] = field(default_factory=list)
    capacity: list[tuple[str, list[Step]]] = field(default_factory=list)
    store: list[StoreResult] = field(default_factory=list)
    cost: tuple[Any, Any] | None = None
    images: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, " \
           f"Python {platform.python_version()}"


Progress = Callable[[str], None]


async def run(plan: Plan, sections: tuple[str, ...], progress: Progress) -> Results:
    results = Results(plan, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine())
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="threadwise-bench-"))
        workdirs = iter(range(10_000))
        pg: list[PgServer] = []

        async def postgres() -> PgServer:
            if not pg:
                pg.append(await stack.enter_async_context(postgres_server()))
            return pg[0]

        def workdir() -> Path:
            path = Path(tmp) / f"run{next(workdirs)}"
            path.mkdir()
            return path

        done: dict[tuple[str, str, int, int], RunResult] = {}

        async def slack(strategy: str, n: int, turns: int = 1) -> RunResult:
            key = ("Slack", strategy, n, turns)
            if key not in done:
                progress(f"Slack, {strategy}, {n} conversation(s) x {turns} turn(s)")
                done[key] = await run_slack(strategy, n, plan.work, workdir(), turns=turns)
            return done[key]

        if {"streaming", "history"} & set(sections):
            progress("warming up (imports, tokenizer, first connections)")
            await run_slack(OURS, 1, replace(plan.work, reply_tokens=5), workdir())
        if "streaming" in sections:
            for n in plan.slack:
                for strategy in STREAMERS:
                    trials = plan.trials(n)
                    first = await slack(strategy, n)  # kept: the history section reuses it
                    results.streaming.append(merged([first] + [
                        await run_slack(strategy, n, plan.work, workdir())
                        for _ in range(trials - 1)
                    ]))
            for n in plan.discord:
                for strategy in STREAMERS:
                    trials = plan.trials(n)
                    progress(f"Discord, {strategy}, {n} conversation(s), {trials} trial(s)")
                    results.streaming.append(merged([
                        await run_discord(strategy, n, plan.work, workdir())
                        for _ in range(trials)
                    ]))
        if "history" in sections:
            for n, turns in plan.history:
                results.history.append((await slack(OURS, n, turns), await slack(REREAD, n, turns)))
        if "capacity" in sections:
            for backend in plan.capacity_stores:
                progress(f"capacity ramp {plan.capacity} on {backend} (bot in a child process)")
                try:
                    server = await postgres() if backend == POSTGRES else None
                    steps = await ramp(list(plan.capacity), plan.work, postgres=server)
                    results.capacity.append((backend, steps))
                except NoPostgres as exc:  # say so, keep going
                    results.errors.append(f"capacity on {backend}: {exc}")
        if "store" in sections:
            args = (plan.store_messages, plan.store_threads, plan.store_samples)
            progress(f"store: SQLite, {plan.store_messages:,} messages")
            results.store.append(await bench_sqlite(*args))
            progress(f"store: PostgreSQL, {plan.store_messages:,} messages")
            try:
                results.store.append(await bench_postgres(await postgres(), *args))
            except NoPostgres as exc:
                results.errors.append(f"store on PostgreSQL: {exc}")
        if "cost" in sections:
            progress("cost: 40-turn thread with photos")
            results.cost = await run_cost()
        if "images" in sections:
            progress("images: 12-megapixel photo")
            results.images = image_rows(synthetic_photo())
    results.seconds = time.monotonic() - started
    return results


def render(results: Results) -> str:
    plan = results.plan
    work = plan.work
    out = [
        f"threadwise bench ({plan.name} run, {results.started}; {results.machine}; "
        f"took {results.seconds:.0f} s).",
        f"Fake model: {work.ttft_s * 1000:.0f} ms to first token, then "
        f"{work.tokens_per_s:.0f} tokens/s, {work.reply_tokens}-token replies.",
    ]
    if results.streaming:
        solo = (f" A one-conversation row is {plan.solo_trials} independent runs (fresh "
                "emulators and budgets), so its median and p99 are over that many replies."
                if plan.solo_trials > 1 else "")
        out += ["", "#### Overhead, freshness and writes", "",
                "Freshness is each reply's largest gap between a word leaving the model and "
                f"showing; medians and p99 are over replies.{solo}", "",
                report.streaming_table(results.streaming), "",
                "#### Ratios against the baselines (>1×: threadwise is better)", "",
                report.ratio_table(results.streaming)]
    if results.history:
        out += ["", "#### History: our store vs re-reading the thread every turn (Slack)", "",
                report.history_table(results.history)]
    if results.capacity:
        out += ["", "#### Capacity of one bot process (Slack adapter, platform limits lifted)",
                "", report.capacity_table(results.capacity), ""]
        out += [f"Sustained on {backend} before the median overhead doubled: "
                f"{report.sustained(steps)} concurrent conversations."
                for backend, steps in results.capacity]
    if results.store:
        out += ["", "#### Store", "", report.store_table(results.store)]
    if results.cost:
        ours, base = results.cost
        out += ["", "#### Prompt cost over a 40-turn thread with 3 photos", "",
                report.cost_table(ours, base), "", report.cache_summary(ours, base)]
    if results.images:
        out += ["", "#### A 12-megapixel photo", "", report.image_table(results.images)]
    if results.errors:
        out += ["", "#### Not measured", ""] + [f"- {e}" for e in results.errors]
    return "\n".join(out) + "\n"


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(results: Results, path: Path) -> None:
    path.write_text(json.dumps(_plain(results), indent=1) + "\n")


def quiet_logs() -> None:
    """The bots log every 429 and failed write the baselines provoke; the tables count them."""
    logging.basicConfig(level=logging.CRITICAL)
    for name in ("", "discord", "slack_bolt", "slack_sdk", "threadwise", "core", "adapters"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


__all__ = ["CIS", "FULL", "LLMCORD", "QUICK", "SECTIONS", "SMOKE", "Plan", "Results", "run"]
