"""The benchmark's smallest run still works end to end (keeps `python -m bench` from rotting).

One Slack conversation per strategy against the emulators: every strategy's row is in
the printed table, every reply shows in full, and our streamer drew no 429s.
"""

from __future__ import annotations

from bench.runner import SMOKE, render, run
from bench.streaming import CIS, LLMCORD, OURS


async def test_smallest_bench_run_prints_every_strategy_and_ours_has_no_429s() -> None:
    results = await run(SMOKE, ("streaming",), lambda message: None)

    by_strategy = {r.strategy: r for r in results.streaming}
    assert set(by_strategy) == {OURS, LLMCORD, CIS}
    for run_result in by_strategy.values():
        assert run_result.replies == 1 and run_result.incomplete == 0
        assert len(run_result.freshness) == 1 and len(run_result.overhead) == 1
    ours = by_strategy[OURS]
    assert ours.rate_limited == 0
    assert ours.writes >= 2  # the reply was posted, then completed

    printed = render(results)
    for strategy in (OURS, LLMCORD, CIS):
        assert f"| Slack | 1 | {strategy} |" in printed
    assert "#### Ratios against the baselines" in printed
