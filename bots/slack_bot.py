"""`threadwise slack`, `threadwise manifest slack` and the Slack part of `threadwise check`."""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError

from adapters.slack.bot import (
    SlackBot,
    SlackStartupError,
    app_token_problem,
    bot_token_problem,
    web_client,
)
from adapters.slack.history import load_read_settings
from adapters.slack.manifest import BOT_SCOPES, manifest_yaml
from bots.check import CheckResult, plain_reason
from bots.compose import open_core
from bots.config import ConfigError, load_overrides, validated, warn_unreachable
from bots.stop_signals import stop_on_signals
from core.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 20.0


def slack_manifest(request_url: str | None = None) -> str:
    """A ready-to-paste app manifest (Socket Mode; HTTP mode when request_url is given)."""
    return manifest_yaml(request_url=request_url)


async def run_slack(settings: Settings) -> None:
    """Run the Slack bot until SIGINT/SIGTERM; finish running turns briefly, then stop."""
    with stop_on_signals() as stop:
        await _serve(settings, stop)


def _quiet_sdk_loggers() -> None:
    """slack_sdk and Bolt log whole request and event bodies at DEBUG; never emit those."""
    for name in ("slack_sdk", "slack_bolt", "threadwise.slack.bolt"):
        sdk_log = logging.getLogger(name)
        if sdk_log.getEffectiveLevel() < logging.INFO:
            sdk_log.setLevel(logging.INFO)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    _quiet_sdk_loggers()
    read = validated(load_read_settings)  # SLACK_HISTORY_*: exit 2 before anything opens
    overrides = load_overrides(settings)
    warn_unreachable(overrides, settings.slack_allowed_channels)
    async with open_core(settings, overrides) as core:
        try:
            bot = SlackBot(settings, core.service, registry=core.metrics.registry, read=read,
                           overrides=overrides, tailored=core.services)
        except SlackStartupError as exc:
            raise ConfigError(str(exc)) from None
        try:
            started = await _start_unless_stopped(bot, stop)
        except SlackStartupError as exc:
            await bot.aclose()
            raise ConfigError(str(exc)) from None
        except BaseException:
            await bot.aclose()
            raise
        if not started:
            log.info("stopped before the Slack bot was connected")
            await bot.aclose()
            return
        # Replies other (dead) processes left streaming, in this workspace only.
        team = bot.handler.me.team_id if bot.handler is not None else ""
        sweeper = asyncio.create_task(
            core.service.run_orphan_sweeper(
                bot.port, platform="slack", owns=lambda key: key.space == team
            ),
            name="slack-orphan-sweeper",
        )
        try:
            await stop.wait()
            log.info("stopping the Slack bot")
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
            await bot.aclose(grace_s=SHUTDOWN_GRACE_S)


async def _start_unless_stopped(bot: SlackBot, stop: asyncio.Event) -> bool:
    """bot.start(), abandoned when stop is set first; True when the bot started.

    Reaching Slack can take long (slack_sdk retries a Socket Mode connection forever),
    and SIGTERM must still end the process then, not only SIGKILL.
    """
    starting = asyncio.create_task(bot.start(), name="slack-start")
    stopping = asyncio.create_task(stop.wait(), name="slack-stop-requested")
    try:
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when we are cancelled ourselves
        for task in (starting, stopping):
            task.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
    if starting.cancelled():
        return False
    starting.result()  # raises what start raised
    return True


def _secrets(settings: Settings) -> list[str]:
    tokens = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    return [t.get_secret_value() for t in tokens if t is not None]


async def check_slack(settings: Settings) -> list[CheckResult]:
    """auth.test for the bot token, the granted scopes, and the app token in Socket Mode."""
    results: list[CheckResult] = []
    app_token = settings.slack_app_token
    problem = app_token_problem(app_token.get_secret_value()) if app_token is not None else None
    # Judged offline, so a swapped token is reported even when Slack cannot be reached.
    offline = [CheckResult("slack app token", False, problem)] if problem is not None else []
    token = settings.slack_bot_token
    bad_kind = bot_token_problem(token.get_secret_value()) if token is not None else None
    if bad_kind is not None:  # clearly not a bot token: never send it to Slack
        return [CheckResult("slack bot token", False, bad_kind), *offline]
    try:
        client = web_client(settings)
    except SlackStartupError as exc:
        return [CheckResult("slack", False, str(exc)), *offline]
    try:
        resp = await client.auth_test()
    except SlackApiError as exc:
        return [CheckResult("slack bot token", False,
                            f"auth.test failed: {exc.response.get('error')}"), *offline]
    except Exception as exc:
        why = plain_reason(exc, *_secrets(settings))
        return [CheckResult("slack bot token", False,
                            f"could not reach {settings.slack_api_url}: {why}"), *offline]
    results.append(CheckResult(
        "slack bot token", True,
        f"bot {resp.get('user')} ({resp.get('user_id')}) "
        f"in {resp.get('team')} ({resp.get('team_id')})",
    ))
    granted = {s.strip() for s in str(resp.headers.get("x-oauth-scopes", "")).split(",") if s}
    missing = sorted(set(BOT_SCOPES) - granted)
    if missing:
        detail = "missing " + ", ".join(f"{s} ({BOT_SCOPES[s]})" for s in missing)
        results.append(CheckResult(
            "slack scopes", False,
            detail + "; add them under OAuth & Permissions (or `threadwise manifest slack`) "
            "and reinstall the app",
        ))
    else:
        results.append(CheckResult("slack scopes", True, "all required scopes granted"))
    if offline:
        results.extend(offline)
    elif app_token is not None:
        try:
            await client.apps_connections_open(app_token=app_token.get_secret_value())
            results.append(CheckResult("slack app token", True, "Socket Mode connection allowed"))
        except SlackApiError as exc:
            error = exc.response.get("error")
            results.append(
                CheckResult("slack app token", False, f"apps.connections.open failed: {error}")
            )
    elif settings.slack_signing_secret is None:
        results.append(CheckResult(
            "slack mode", False, "set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET"
        ))
    else:
        results.append(CheckResult(
            "slack mode", True, f"HTTP mode: Slack must reach POST :{settings.port}/slack/events"
        ))
    return results
