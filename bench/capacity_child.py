"""The bot process of the capacity bench: the real SlackBot with Slack's limits lifted.

Started by bench.capacity with one JSON argument (emulator and model URLs, database
path). Prints `READY <events url>`, answers events until its stdin says STOP, waits
for every turn to finish, then prints one JSON line with its CPU time and peak RSS.

Limits lifted means: each conversation has its own write budget (as if every thread
were in a workspace of its own) and the per-method gate runs 1000x faster, so what
saturates is this process, not Slack. Each reply still writes at most once per
second, as it would in production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import resource
import sys
import time
from typing import Any

from adapters.slack.bot import SlackBot
from adapters.slack.files import FileHostPolicy, SlackFileFetcher
from adapters.slack.port import SlackChatPort
from bots.compose import open_core
from core.ports import WriteLimits
from core.settings import Settings
from core.types import ThreadKey

GATE_SPEED = 1000.0


class PerThreadBudgetPort(SlackChatPort):
    """Our Slack port with write and post budgets per thread, not per workspace/channel."""

    def limits(self, key: ThreadKey) -> WriteLimits:
        base = super().limits(key)
        thread = f"{key.channel}:{key.root}"
        return dataclasses.replace(
            base, bucket=f"{base.bucket}:{thread}", post_bucket=f"{base.post_bucket}:{thread}"
        )


async def _wait_for_stop() -> None:
    """Read stdin on the event loop itself (a reader thread would take an executor slot
    that DNS lookups of the HTTP clients need)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while (line := await reader.readline()) and line.strip() != b"STOP":
        pass


async def serve(cfg: dict[str, Any]) -> dict[str, float]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, MODEL_BASE_URL=cfg["model_url"], MODEL_API_KEY="bench-key",
        DATABASE_URL=cfg["database_url"], SLACK_BOT_TOKEN=cfg["bot_token"],
        SLACK_API_URL=cfg["slack_api_url"], SLACK_SIGNING_SECRET=cfg["signing_secret"],
        SLACK_FILE_HOSTS=cfg["file_host"], PORT=0,
    )
    async with open_core(settings) as core:
        bot = SlackBot(settings, core.service, registry=core.metrics.registry,
                       host="127.0.0.1", port=0, speed=GATE_SPEED)
        token = cfg["bot_token"]
        files = SlackFileFetcher(token, FileHostPolicy(settings.slack_file_hosts), bot.http)
        bot.port = PerThreadBudgetPort(bot.client, files, gate=bot.gate)
        try:
            await bot.start()
            cpu, wall = time.process_time(), time.monotonic()
            print(f"READY {bot.url}", flush=True)
            await _wait_for_stop()
            await bot.idle()
            return {
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.monotonic() - wall,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        finally:
            await bot.aclose()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    stats = asyncio.run(serve(json.loads(sys.argv[1])))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
