"""Small statistics and Markdown helpers shared by every bench section."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values.

    Infinite values (a reply that never showed in full) sort last and stay infinite.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    if fraction == 0 or ordered[low] == ordered[high]:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def median(values: Sequence[float]) -> float:
    return pct(values, 50)


def p99(values: Sequence[float]) -> float:
    return pct(values, 99)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    return "never" if math.isinf(seconds) else f"{seconds * 1000:,.0f}"


def secs(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    return "never" if math.isinf(seconds) else f"{seconds:.2f}"


def ratio(baseline: float, ours: float) -> str:
    """How many times the baseline's figure is ours (>1: ours is smaller, i.e. better)."""
    if math.isnan(baseline) or math.isnan(ours):
        return "–"
    if math.isinf(baseline):
        return "∞" if not math.isinf(ours) else "–"
    if math.isinf(ours):
        return "0×"
    if ours <= 0:
        return "∞" if baseline > 0 else "1.0×"
    value = baseline / ours
    return f"{value:.0f}×" if value >= 10 else f"{value:.1f}×" if value >= 1 else f"{value:.2f}×"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
