"""`threadwise check`: what is configured, and does each configured service answer."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bots.config import ConfigError, load_overrides, unreachable_sections, validated
from core.model import build_model_client
from core.model.errors import operator_hint
from core.model.types import ModelError, ModelMessage, ModelRequest, TextDelta, TextPart
from core.settings import Settings, is_loopback_url
from core.store import open_store


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _line(result: CheckResult) -> str:
    mark = "ok  " if result.ok else "FAIL"
    return f"[{mark}] {result.name}: {result.detail}"


@contextlib.contextmanager
def _model_failures_unlogged() -> Iterator[None]:
    """check prints a failed model call as its [FAIL] line, with more detail than the
    client's own warning; logging it as well would show the same failure twice."""
    client_log = logging.getLogger("core.model.client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        client_log.setLevel(level)


async def check_model(settings: Settings) -> CheckResult:
    name = f"model {settings.model_name} ({settings.model_api} API at {settings.model_base_url})"
    if settings.model_api_key is None and not is_loopback_url(settings.model_base_url):
        # Same rule as `threadwise chat`: a server on this machine needs no key.
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
        with _model_failures_unlogged():
            async for event in client.stream(request):
                if isinstance(event, TextDelta):
                    got += event.text
        took = time.monotonic() - started
        return CheckResult(name, True, f"answered in {took:.1f} s ({got.strip()[:20]!r})")
    except ModelError as exc:
        return CheckResult(name, False, explain(exc, settings))
    finally:
        await client.aclose()


def _innermost(exc: BaseException) -> str:
    """The text of the error at the bottom of the chain, e.g. '[Errno 111] Connect call failed'.

    Replies show only 'could not reach …'; an operator running check needs the why.
    """
    inner, seen = exc, {id(exc)}
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        inner = nxt
    return "" if inner is exc else " ".join(str(inner).split())[:300]


def plain_reason(exc: BaseException, *secrets: str) -> str:
    """Why a call failed, in the words of the error at the bottom of the chain (not the
    exception's class name), with every secret in `secrets` redacted."""
    detail = _innermost(exc) or " ".join(str(exc).split())[:300] or type(exc).__name__
    return redact(detail, *secrets)


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if len(secret) >= 6:  # as the log scrubber: shorter "keys" would mangle ordinary words
            text = text.replace(secret, "[redacted]")
    return text


def explain(exc: ModelError, settings: Settings) -> str:
    """The reason plus the underlying error and a hint for the usual mistakes (no secrets)."""
    detail = exc.reason
    cause = _innermost(exc) if exc.status is None else ""  # a status already has its reason
    if cause and cause not in detail:
        detail += f": {cause}"
    hint = operator_hint(ModelError(detail, status=exc.status), settings.model_base_url,
                         settings.model_name)
    if hint:
        detail += f"; {hint}"
    key = settings.model_api_key.get_secret_value() if settings.model_api_key else ""
    return redact(detail, key)


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


def check_platform_settings(settings: Settings) -> list[CheckResult]:
    """The platforms' own variables (SLACK_HISTORY_*, DISCORD_*), which their bots load later.

    A mistake there is reported even for a platform without a token: it was meant for it.
    """
    from adapters.discord.settings import load_discord_settings
    from adapters.slack.history import load_read_settings

    loaders: list[tuple[str, Callable[[], object], bool]] = [
        ("slack settings", load_read_settings, _slack_token_kind_ok(settings)),
        ("discord settings", load_discord_settings, settings.discord_token is not None),
    ]
    results = []
    for name, load, configured in loaders:
        try:
            validated(load)
        except ConfigError as exc:
            problem = str(exc).removeprefix("invalid configuration: ")
            results.append(CheckResult(name, False, problem))
        else:
            if configured:
                results.append(CheckResult(name, True, "valid"))
    return results


def _slack_token_kind_ok(settings: Settings) -> bool:
    """SLACK_BOT_TOKEN is set and looks like a bot token. One of the wrong kind gets its own
    [FAIL] line (check_slack): "slack settings: valid" before it would read as if it were fine."""
    if settings.slack_bot_token is None:
        return False
    from adapters.slack.bot import bot_token_problem

    return bot_token_problem(settings.slack_bot_token.get_secret_value()) is None


async def check_overrides(settings: Settings) -> list[CheckResult]:
    """THREADWISE_CONFIG: readable, valid, how many channels it tailors, and the same tiny
    request for every other model it names."""
    name = "channel overrides"
    try:
        overrides = load_overrides(settings)
    except ConfigError as exc:
        return [CheckResult(name, False, str(exc).removeprefix("invalid configuration: "))]
    counts = f"{len(overrides.slack)} Slack and {len(overrides.discord)} Discord channel(s)"
    detail = f"{counts} from {overrides.source}"
    # A warning, as at start: such a section is harmless, only pointless.
    if unreachable := unreachable_sections(overrides, settings.slack_allowed_channels):
        detail += f"; warning: {unreachable}"
    results = [CheckResult(name, True, detail)]
    models = dict.fromkeys([*overrides.models("slack"), *overrides.models("discord")])
    models.pop(settings.model_name, None)
    for model in models:
        results.append(await check_model(settings.model_copy(update={"model_name": model})))
    return results


async def run_checks(settings: Settings) -> int:
    results = [await check_store(settings), await check_model(settings)]
    if settings.threadwise_config:
        results.extend(await check_overrides(settings))
    results.extend(check_platform_settings(settings))
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
