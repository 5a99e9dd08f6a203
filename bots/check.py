"""`threadwise check`: what is configured, and does each configured service answer."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from core.model import build_model_client
from core.model.types import ModelError, ModelMessage, ModelRequest, TextDelta, TextPart
from core.settings import Settings
from core.store import open_store


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _line(result: CheckResult) -> str:
    mark = "ok  " if result.ok else "FAIL"
    return f"[{mark}] {result.name}: {result.detail}"


async def check_model(settings: Settings) -> CheckResult:
    name = f"model {settings.model_name} ({settings.model_api} API at {settings.model_base_url})"
    if settings.model_api_key is None:
        return CheckResult(name, False, "no key: set MODEL_API_KEY (or GMI_API_KEY/OPENAI_API_KEY)")
    client = build_model_client(settings)
    started = time.monotonic()
    request = ModelRequest(
        instructions="Reply with the single word: ok",
        messages=(ModelMessage("user", (TextPart("ping"),)),),
        max_output_tokens=16,
        tools_enabled=False,
    )
    try:
        got = ""
        async for event in client.stream(request):
            if isinstance(event, TextDelta):
                got += event.text
        took = time.monotonic() - started
        return CheckResult(name, True, f"answered in {took:.1f} s ({got.strip()[:20]!r})")
    except ModelError as exc:
        return CheckResult(name, False, exc.reason)
    finally:
        await client.aclose()


async def check_store(settings: Settings) -> CheckResult:
    safe = settings.database_url.split("@")[-1] if "@" in settings.database_url else (
        settings.database_url
    )
    try:
        store = await open_store(settings.database_url)
    except Exception as exc:
        return CheckResult(f"database {safe}", False, str(exc))
    await store.close()
    return CheckResult(f"database {safe}", True, "opened and migrated")


async def run_checks(settings: Settings) -> int:
    results = [await check_store(settings), await check_model(settings)]
    if settings.slack_bot_token is not None:
        from bots.slack_bot import check_slack

        results.extend(await check_slack(settings))
    if settings.discord_token is not None:
        from bots.discord_bot import check_discord

        results.extend(await check_discord(settings))
    if settings.slack_bot_token is None and settings.discord_token is None:
        results.append(CheckResult("platforms", True,
                                   "none configured (set SLACK_BOT_TOKEN or DISCORD_TOKEN)"))
    for result in results:
        print(_line(result))
    failed = sum(not r.ok for r in results)
    print("all checks passed" if not failed else f"{failed} check(s) failed", file=sys.stderr)
    return 0 if not failed else 1
