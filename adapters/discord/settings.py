"""Discord-only settings (community controls, commands). Contract settings live in core.settings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Csv = Annotated[tuple[str, ...], NoDecode]


class DiscordSettings(BaseSettings):
    """Read from DISCORD_* environment variables (and .env), like the core settings."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        populate_by_name=True,
    )

    blocked_channels: Csv = Field((), alias="DISCORD_BLOCKED_CHANNELS")
    blocked_roles: Csv = Field((), alias="DISCORD_BLOCKED_ROLES")
    blocked_users: Csv = Field((), alias="DISCORD_BLOCKED_USERS")
    admin_users: Csv = Field((), alias="DISCORD_ADMIN_USERS")
    allow_dms: bool = Field(True, alias="DISCORD_ALLOW_DMS")
    auto_thread: bool = Field(False, alias="DISCORD_AUTO_THREAD")
    # Requests one user may start per minute; 0 turns the limit off.
    user_rate_per_min: int = Field(10, alias="DISCORD_USER_RATE_PER_MIN", ge=0)
    # Model tokens one user may spend per UTC day; 0 means no quota.
    daily_token_quota: int = Field(0, alias="DISCORD_DAILY_TOKEN_QUOTA", ge=0)
    # Models offered by /model (the configured MODEL_NAME is always offered too).
    models: Csv = Field((), alias="DISCORD_MODELS")
    application_id: str | None = Field(None, alias="DISCORD_APPLICATION_ID")

    @field_validator(
        "blocked_channels", "blocked_roles", "blocked_users", "admin_users", "models",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        return value


def load_discord_settings(**overrides: Any) -> DiscordSettings:
    """Read the environment (and .env); keyword overrides use the DISCORD_* names."""
    return DiscordSettings(**overrides)
