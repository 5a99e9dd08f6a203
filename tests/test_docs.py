"""The README documents every variable threadwise reads (operators configure from it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from adapters.discord.settings import DiscordSettings
from adapters.slack.history import SlackReadSettings
from core.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def variables(model: type[BaseSettings]) -> set[str]:
    names: set[str] = set()
    for field in model.model_fields.values():
        if isinstance(field.alias, str):
            names.add(field.alias)
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice) for choice in field.validation_alias.choices)
    return names


def test_every_variable_is_in_the_readme() -> None:
    read = variables(Settings) | variables(SlackReadSettings) | variables(DiscordSettings)
    assert "SLACK_FOLLOW_THREADS" in read and "GMI_API_KEY" in read
    assert sorted(name for name in read if f"`{name}`" not in README) == []
