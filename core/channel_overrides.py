"""Per-channel overrides from the optional TOML file named by THREADWISE_CONFIG.

    [slack.C0123ABCD]                 # a Slack channel id
    system_prompt = "You answer questions about our on-call runbooks."
    model = "openai/gpt-5.5"
    allowed_users = ["U012AB3CD"]     # only these people are answered here

    [discord.112233445566778899]      # a Discord channel id; its threads inherit it
    model = "openai/gpt-5.2-chat"
    allowed_roles = ["helpers"]       # replaces DISCORD_ALLOWED_ROLES here
    daily_token_quota = 20000         # replaces DISCORD_DAILY_TOKEN_QUOTA here

A setting left out falls back to the environment. Channels are named by id, not by
name: names change and are not unique, ids are neither.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# Strict: TOML's `true` or "20000" is a mistake, not a quota of 1 or of 20,000.
Quota = Annotated[int, Field(strict=True, ge=0)]

CHANNEL_ID = {
    "slack": re.compile(r"[CDG][A-Z0-9]{2,}"),
    "discord": re.compile(r"[0-9]{15,22}"),
}
CHANNEL_ID_HINT = {
    "slack": "a channel id such as C0123ABCD (channel details → About, at the bottom)",
    "discord": "a channel id such as 112233445566778899 (Developer Mode → Copy Channel ID)",
}
# Names and mentions would never match: a list of them answers nobody there.
USER_ID = {
    "slack": re.compile(r"[UW][A-Z0-9]{2,}"),
    "discord": re.compile(r"[0-9]{15,22}"),
}
USER_ID_HINT = {
    "slack": "a member id such as U012AB3CD (profile → ⋮ → Copy member ID)",
    "discord": "a user id such as 123456789012345678 (Developer Mode → Copy User ID)",
}


class ChannelOverride(BaseModel):
    """What one channel changes; None = the environment's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: NonBlank | None = None
    model: NonBlank | None = None
    allowed_users: tuple[NonBlank, ...] | None = None


class DiscordChannelOverride(ChannelOverride):
    allowed_roles: tuple[NonBlank, ...] | None = None
    daily_token_quota: Quota | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack: dict[str, ChannelOverride] = {}
    discord: dict[str, DiscordChannelOverride] = {}


_NO_OVERRIDE = ChannelOverride()
_NO_DISCORD_OVERRIDE = DiscordChannelOverride()


class OverridesError(ValueError):
    """THREADWISE_CONFIG cannot be used; the message is one line naming the place."""


@dataclass(frozen=True)
class ChannelOverrides:
    slack: Mapping[str, ChannelOverride] = field(default_factory=dict)
    discord: Mapping[str, DiscordChannelOverride] = field(default_factory=dict)
    source: str = ""

    def slack_channel(self, channel: str) -> ChannelOverride:
        return self.slack.get(channel) or _NO_OVERRIDE

    def discord_places(self, places: Iterable[str]) -> DiscordChannelOverride:
        """The override for the first of `places` (a thread, then its parent channel),
        setting by setting: a thread's own section wins, the parent fills the gaps."""
        found = [self.discord[p] for p in places if p in self.discord]
        if len(found) <= 1:  # the usual case, on every message: nothing to merge
            return found[0] if found else _NO_DISCORD_OVERRIDE
        merged: dict[str, object] = {}
        for section in reversed(found):
            merged.update(section.model_dump(exclude_none=True))
        return DiscordChannelOverride.model_validate(merged)

    def models(self, platform: str) -> list[str]:
        sections = self.slack if platform == "slack" else self.discord
        return [s.model for s in sections.values() if s.model is not None]


def load_channel_overrides(path: str | None) -> ChannelOverrides:
    """The overrides in `path`, or none when it is unset. Raises OverridesError."""
    if not path:
        return ChannelOverrides()
    # `THREADWISE_CONFIG=~/threadwise.toml` in a .env file reaches us unexpanded: no shell.
    path = os.path.expanduser(path)
    where = f"THREADWISE_CONFIG ({path})"
    try:
        # utf-8-sig: Windows editors may start the file with a byte-order mark.
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise OverridesError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise OverridesError(f"{where}: is a directory, not a TOML file") from None
    except PermissionError:
        raise OverridesError(f"{where}: not readable by this user") from None
    except OSError as exc:  # a file where a folder should be, a symlink loop, …
        raise OverridesError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise OverridesError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise OverridesError(f"{where}: not valid TOML: {exc}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise OverridesError(f"{where}: {_describe(exc)}") from None
    for platform, sections in (("slack", parsed.slack), ("discord", parsed.discord)):
        for channel, section in sections.items():
            if not CHANNEL_ID[platform].fullmatch(channel):
                raise OverridesError(
                    f"{where}: [{platform}.{channel}] is not {CHANNEL_ID_HINT[platform]}"
                )
            for user in section.allowed_users or ():
                if not USER_ID[platform].fullmatch(user):
                    raise OverridesError(
                        f"{where}: [{platform}.{channel}.allowed_users] holds {user!r}, "
                        f"which is not {USER_ID_HINT[platform]}"
                    )
    return ChannelOverrides(parsed.slack, parsed.discord, source=path)


def _describe(exc: ValidationError) -> str:
    """'[discord.123.modle] is not a setting here …' — values are never echoed."""
    return "; ".join(_problem(err) for err in exc.errors(include_input=False, include_url=False))


# What to write for each setting, as an example an operator can copy.
_EXAMPLE = {
    "system_prompt": 'system_prompt = "You answer questions about our runbooks."',
    "model": 'model = "openai/gpt-5.5"',
    "allowed_roles": 'allowed_roles = ["Helpers"]',
    "daily_token_quota": "daily_token_quota = 20000",
}
_SAMPLE_CHANNEL = {"slack": "C0123ABCD", "discord": "112233445566778899"}
_SAMPLE_USER = {"slack": "U012AB3CD", "discord": "123456789012345678"}


def _example(platform: str, setting: str) -> str:
    if setting == "allowed_users":
        return f'allowed_users = ["{_SAMPLE_USER.get(platform, "U012AB3CD")}"]'
    return _EXAMPLE.get(setting, f"{setting} = …")


def _problem(err: ErrorDetails) -> str:
    """One pydantic error as the fix, naming the section and setting (never the value)."""
    kind = err.get("type")
    loc = [str(part) for part in err.get("loc", ())]
    where = f"[{'.'.join(loc[:3])}]"
    platform = loc[0] if loc else ""
    sample = _SAMPLE_CHANNEL.get(platform, "C0123ABCD")
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return (f"[{loc[0]}] is not a setting here (known: {_known(loc)}): settings go "
                    f"under a channel's own section, e.g. [slack.C0123ABCD]")
        return f"{where} is not a setting here (known: {_known(loc)})"
    if len(loc) == 1 and kind == "dict_type":
        # `slack = "…"`: the platform's name used as a setting.
        return (f"[{platform}] must hold sections, one per channel, e.g. [{platform}.{sample}] "
                f"followed by its settings")
    if len(loc) == 2 and kind in ("model_type", "dict_type"):
        if platform in CHANNEL_ID and CHANNEL_ID[platform].fullmatch(loc[1]):
            # `[slack]\nC0123ABCD = …` or `[[slack.C0123ABCD]]`: a channel, not a section.
            return (f"[{platform}.{loc[1]}] must be a section: write [{platform}.{loc[1]}] "
                    f"on a line of its own, its settings below it")
        # `[discord]\nmodel = …`: a setting outside any channel's section.
        return (f"{where} is not a [{platform}.<channel id>] section: put settings under "
                f"a channel's own section, e.g. [{platform}.{sample}]")
    if len(loc) >= 3:
        setting = loc[2]
        example = _example(platform, setting)
        if setting in ("allowed_users", "allowed_roles"):
            what = ("role ids or names" if setting == "allowed_roles"
                    else "member ids" if platform == "slack" else "user ids")
            if len(loc) == 3:  # `allowed_users = "U123"`: one id, not a list of them
                return f"{where}: write a list of {what}, e.g. {example}"
            item = f"{where}: item {int(loc[3]) + 1 if loc[3].isdigit() else loc[3]}"
            if kind == "string_too_short":
                return f"{item} is blank: write a list of {what}, e.g. {example}"
            return f"{item} is not text: put each of the {what} in quotes, e.g. {example}"
        if setting == "daily_token_quota":
            if kind == "greater_than_equal":
                return f"{where}: write 0 or more tokens (0 = no quota), e.g. {example}"
            return f"{where}: write a whole number of tokens, without quotes, e.g. {example}"
        if kind == "string_too_short":
            return (f"{where} is blank: write some text, e.g. {example}, or leave the "
                    f"setting out to use the environment's")
        if kind == "string_type":
            return f"{where}: write text in quotes, e.g. {example}"
    return f"{where}: {err.get('msg', 'invalid')}"


def _known(loc: list[str]) -> str:
    if len(loc) <= 1:
        return "[slack.<channel id>], [discord.<channel id>]"
    model = DiscordChannelOverride if loc[0] == "discord" else ChannelOverride
    return ", ".join(model.model_fields)
