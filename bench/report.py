"""Markdown tables for every section, and the freshness verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.capacity import Step
from bench.cost import PromptSeries
from bench.images import ImageRow
from bench.stats import median, ms, p99, ratio, secs, table
from bench.store import StoreResult
from bench.streaming import OURS, REREAD, RunResult


def _pair(values: Sequence[float]) -> str:
    return f"{ms(median(values))} / {ms(p99(values))}"


def _spair(values: Sequence[float]) -> str:
    return f"{secs(median(values))} / {secs(p99(values))}"


def _wpr(run: RunResult) -> str:
    return "–" if math.isnan(run.writes_per_reply) else f"{run.writes_per_reply:.1f}"


def streaming_table(runs: Sequence[RunResult]) -> str:
    rows = [
        (r.platform, r.conversations, r.strategy, _pair(r.overhead), _spair(r.freshness),
         _wpr(r), r.rate_limited, f"{r.incomplete}/{r.replies}", r.failures, r.regressions)
        for r in runs
    ]
    return table(
        ("platform", "conversations", "strategy", "overhead p50 / p99 (ms)",
         "freshness p50 / p99 (s)", "writes / reply", "429s", "incomplete replies",
         "failed writes", "went backwards"),
        rows,
    )


# Closer than this (as a share of the baseline's figure) is noise on a shared machine.
TIE = 0.02


def verdict(ours: RunResult, other: RunResult) -> str:
    """"yes" when ours shows every word sooner (median and p99 of the worst gap, each by
    more than TIE) with zero 429s and every reply complete; "tie" when neither differs by
    more than TIE; else "no"."""
    if ours.rate_limited or ours.incomplete:
        return "no"
    pairs = [(median(ours.freshness), median(other.freshness)),
             (p99(ours.freshness), p99(other.freshness))]
    if all(mine < theirs * (1 - TIE) for mine, theirs in pairs):
        return "yes"
    if all(mine <= theirs * (1 + TIE) for mine, theirs in pairs):
        return f"tie (within {TIE:.0%})"
    return "no"


def ratio_table(runs: Sequence[RunResult]) -> str:
    ours = {(r.platform, r.conversations): r for r in runs if r.strategy == OURS}
    rows = []
    for r in runs:
        mine = ours.get((r.platform, r.conversations))
        if r.strategy in (OURS, REREAD) or mine is None:
            continue
        rows.append((
            r.platform, r.conversations, r.strategy,
            ratio(median(r.freshness), median(mine.freshness)),
            ratio(p99(r.freshness), p99(mine.freshness)),
            ratio(median(r.overhead), median(mine.overhead)),
            f"{r.rate_limited} vs {mine.rate_limited}",
            verdict(mine, r),
        ))
    return table(
        ("platform", "conversations", "baseline", "freshness p50 (baseline ÷ ours)",
         "freshness p99 (baseline ÷ ours)", "overhead p50 (baseline ÷ ours)",
         "429s (baseline vs ours)", "ours fresher at zero 429s"),
        rows,
    )


def history_table(pairs: Sequence[tuple[RunResult, RunResult]]) -> str:
    rows: list[tuple[object, ...]] = []
    for ours, reread in pairs:
        turns = ours.conversations * ours.turns
        for run in (ours, reread):
            name = run.strategy if run is reread else "threadwise (store)"
            rows.append((
                run.conversations, run.turns, name,
                _pair(run.overhead), f"{run.reads / turns:.1f}", run.rate_limited,
                f"{run.incomplete}/{run.replies}",
            ))
        rows.append((ours.conversations, ours.turns, "ratio (re-read ÷ store)",
                     ratio(median(reread.overhead), median(ours.overhead)) + " / "
                     + ratio(p99(reread.overhead), p99(ours.overhead)), "", "", ""))
    return table(
        ("conversations", "turns each", "history", "overhead p50 / p99 (ms)",
         "platform reads / turn", "429s", "incomplete replies"),
        rows,
    )


def capacity_table(ramps: Sequence[tuple[str, Sequence[Step]]]) -> str:
    rows = []
    for backend, steps in ramps:
        rows += _capacity_rows(backend, steps)
    return table(
        ("store", "concurrent conversations", "overhead p50 / p99 (ms)",
         "freshness p50 / p99 (s)", "bot CPU (cores)", "bot peak RSS (MB)",
         "emulators' CPU (cores)", "incomplete replies", "overhead vs 1"),
        rows,
    )


def _capacity_rows(backend: str, steps: Sequence[Step]) -> list[tuple[object, ...]]:
    base = median(steps[0].samples) if steps else math.nan
    rows: list[tuple[object, ...]] = []
    for step in steps:
        m = median(step.samples)
        verdict = "baseline" if step is steps[0] else ("doubled" if m >= 2 * base else "ok")
        rows.append((
            backend, step.conversations, _pair(step.samples), _spair(step.result.freshness),
            f"{step.bot_cpu_cores:.2f}", f"{step.bot_peak_rss_mb:.0f}",
            f"{step.harness_cpu_cores:.2f}", f"{step.result.incomplete}/{step.result.replies}",
            verdict,
        ))
    return rows


def sustained(steps: Sequence[Step]) -> str:
    if not steps:
        return "–"
    base = median(steps[0].samples)
    ok = [s.conversations for s in steps
          if median(s.samples) < 2 * base and not s.result.incomplete]
    last_ok = max(ok) if ok else 0
    doubled = next((s.conversations for s in steps if median(s.samples) >= 2 * base), None)
    if doubled is None:
        return f"at least {last_ok} (overhead never doubled up to {steps[-1].conversations})"
    return f"{last_ok} (overhead doubled by {doubled})"


def store_table(results: Sequence[StoreResult]) -> str:
    rows = [
        (r.backend, f"{r.messages:,}", f"{r.threads:,}", f"{r.fill_s:.1f}",
         f"{median(r.load) * 1000:.2f} / {p99(r.load) * 1000:.2f}",
         f"{median(r.append) * 1000:.2f} / {p99(r.append) * 1000:.2f}", len(r.load))
        for r in results
    ]
    return table(
        ("store", "stored messages", "threads", "bulk fill (s)", "load thread p50 / p99 (ms)",
         "append under lease p50 / p99 (ms)", "samples each"),
        rows,
    )


COST_TURNS = (1, 2, 3, 5, 10, 13, 14, 20, 25, 26, 28, 29, 40)


def cost_table(ours: PromptSeries, base: PromptSeries) -> str:
    rows: list[tuple[object, ...]] = []
    for turn in COST_TURNS:
        i = turn - 1
        if i >= len(ours.tokens):
            continue
        rows.append((
            turn, f"{ours.tokens[i]:,}", f"{ours.prefix_share[i]:.0%}",
            f"{ours.image_bytes[i] / 1e6:.1f}", f"{base.tokens[i]:,}",
            f"{base.prefix_share[i]:.0%}", f"{base.image_bytes[i] / 1e6:.1f}",
        ))

    def summary(s: PromptSeries) -> tuple[str, str, str]:
        total = sum(s.tokens)
        shared = sum(share * tokens for share, tokens in zip(s.prefix_share, s.tokens,
                                                             strict=True))
        return f"{total:,}", f"{shared / total:.0%}", f"{sum(s.image_bytes) / 1e6:.0f}"

    o, b = summary(ours), summary(base)
    rows.append(("all", o[0], o[1], o[2], b[0], b[1], b[2]))
    return table(
        ("turn", "threadwise: prompt tokens", "threadwise: unchanged prefix",
         "threadwise: image MB sent", "llmcord-style: prompt tokens",
         "llmcord-style: unchanged prefix", "llmcord-style: image MB sent"),
        rows,
    )


def cache_summary(ours: PromptSeries, base: PromptSeries) -> str:
    rows = []
    for s in (ours, base):
        total, cached = sum(s.tokens), sum(s.cacheable)
        rows.append((s.name, f"{total:,}", f"{cached:,}", f"{total - cached:,}",
                     f"{s.tokens[-1]:,}"))
    return table(
        ("prompt recipe", "prompt tokens, 40 turns", "cache-eligible (≥1024, 128-token steps)",
         "not cacheable", "prompt at turn 40"),
        rows,
    )


def image_table(rows: Sequence[ImageRow]) -> str:
    return table(
        ("12-megapixel photo", "pixels sent", "bytes", "base64 bytes", "image tokens (tile rule)",
         "time to prepare (ms)"),
        [(r.label, f"{r.width}×{r.height}", f"{r.bytes:,}", f"{r.base64_bytes:,}", r.tokens,
          f"{r.seconds * 1000:.0f}" if r.seconds else "–") for r in rows],
    )
