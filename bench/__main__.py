"""`python -m bench [--quick] [--only streaming,store] [--json out.json]`: print the tables."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.runner import ALIASES, FULL, QUICK, SECTIONS, SMOKE, quiet_logs, render, run, write_json


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="threadwise benchmarks against the local emulators (prints Markdown).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a smaller run (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="the smallest run (seconds; tests)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--store-messages", type=int, help="stored messages for the store bench")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.store_messages:
        plan = replace(plan, store_messages=args.store_messages)
    wanted = tuple(ALIASES.get(s.strip(), s.strip()) for s in args.only.split(",") if s.strip())
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    quiet_logs()

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {message}", file=sys.stderr, flush=True)

    results = asyncio.run(run(plan, wanted or SECTIONS, progress))
    print(render(results))
    if args.json:
        write_json(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
