"""Loading settings for the command line: one clear line per problem, never a traceback."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from core.channel_overrides import ChannelOverrides, OverridesError, load_channel_overrides
from core.settings import Settings, is_loopback_url

log = logging.getLogger(__name__)

# Which variables each command cannot run without, and how to fix each.
_FIXES = {
    "MODEL_API_KEY": "set MODEL_API_KEY (or GMI_API_KEY / OPENAI_API_KEY) to your provider's key",
    "SLACK_BOT_TOKEN": "set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-…)",
    "SLACK_SIGNING_SECRET": (
        "set SLACK_SIGNING_SECRET (Basic Information → Signing Secret) for HTTP mode, "
        "or SLACK_APP_TOKEN (xapp-…) for Socket Mode"
    ),
    "DISCORD_TOKEN": "set DISCORD_TOKEN to the bot token from the Developer Portal (Bot → Token)",
}


class ConfigError(Exception):
    """A configuration problem, already phrased as one line naming the variable."""


def _alias(loc: tuple[Any, ...]) -> str:
    name = str(loc[0]) if loc else "setting"
    field = Settings.model_fields.get(name)
    if field is not None and isinstance(field.alias, str):
        return field.alias
    if field is not None and field.validation_alias is not None:
        return "MODEL_API_KEY"
    return name.upper()


def describe(exc: ValidationError) -> str:
    """'MODEL_API: Input should be 'chat' or 'responses'' — the input itself is never echoed."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = tuple(err.get("loc", ()))
        problems.append(f"{_alias(loc)}: {message}" if loc else message)  # () = whole model
    return "; ".join(problems)


T = TypeVar("T")


def validated(load: Callable[[], T]) -> T:
    """Run a settings loader; any problem becomes one ConfigError line naming the variable."""
    try:
        return load()
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {describe(exc)}") from None
    except UnicodeDecodeError as exc:  # only .env is decoded; the environment never fails
        where = os.path.join(os.getcwd(), ".env")
        raise ConfigError(
            f"invalid configuration: {where} is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except Exception as exc:  # e.g. an unreadable .env file
        raise ConfigError(f"invalid configuration: {exc}") from None


def load_settings(**overrides: Any) -> Settings:
    return validated(lambda: Settings(**overrides))


def load_overrides(settings: Settings) -> ChannelOverrides:
    """THREADWISE_CONFIG's per-channel overrides (none when unset), or one ConfigError line."""
    try:
        return load_channel_overrides(settings.threadwise_config)
    except OverridesError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


def unreachable_sections(overrides: ChannelOverrides, slack_allowed: tuple[str, ...]) -> str:
    """Why some Slack sections never apply ("" when all may): SLACK_ALLOWED_CHANNELS
    leaves their channels out. (Discord sections may name threads, whose parent the
    allow-list names, so they are not judged.)"""
    outside = sorted(set(overrides.slack) - set(slack_allowed)) if slack_allowed else []
    if not outside:
        return ""
    return (f"THREADWISE_CONFIG has sections for {', '.join(outside)}, which "
            "SLACK_ALLOWED_CHANNELS leaves out: they never apply")


def warn_unreachable(overrides: ChannelOverrides, slack_allowed: tuple[str, ...]) -> None:
    """Say at start that some sections never apply (see unreachable_sections)."""
    if problem := unreachable_sections(overrides, slack_allowed):
        log.warning("%s", problem)


def _slack_missing(settings: Settings) -> tuple[str | None, list[str]]:
    """Why SLACK_BOT_TOKEN is not a bot token (judged by its prefix alone, no network), and
    which Slack variables are missing. Socket Mode (SLACK_APP_TOKEN set) needs no signing
    secret; nor does an app-level token pasted into SLACK_BOT_TOKEN, whose fix is Socket Mode."""
    token = settings.slack_bot_token
    if token is None:
        wrong, meant_socket = None, False
    else:
        from adapters.slack.bot import bot_token_problem

        wrong = bot_token_problem(token.get_secret_value())
        meant_socket = token.get_secret_value().startswith("xapp-")
    missing = ["SLACK_BOT_TOKEN"] if token is None else []
    socket_mode = settings.slack_app_token is not None or meant_socket
    if not socket_mode and settings.slack_signing_secret is None:
        missing.append("SLACK_SIGNING_SECRET")
    return wrong, missing


def require(settings: Settings, command: str) -> None:
    """Fail early, with the fix, when a command's required variables are missing."""
    missing: list[str] = []
    if (
        command in ("chat", "slack", "discord", "summarize")
        and settings.model_api_key is None
        and not is_loopback_url(settings.model_base_url)
    ):
        missing.append("MODEL_API_KEY")
    if command == "slack":
        wrong_token, slack_missing = _slack_missing(settings)
        if wrong_token is not None:  # the more fundamental problem: name it first
            also = missing + slack_missing
            raise ConfigError(wrong_token + (f" (also missing: {', '.join(also)})" if also else ""))
        missing.extend(slack_missing)
    if command == "discord" and settings.discord_token is None:
        missing.append("DISCORD_TOKEN")
    if not missing and command in ("chat", "slack", "discord", "summarize"):
        from core.model.builtin_tools import builtin_registry

        try:
            builtin_registry().select(settings.model_tools)  # names every unknown MODEL_TOOLS entry
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if missing:
        first = missing[0]
        more = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise ConfigError(f"{first} is not set: {_FIXES[first]}{more}")
