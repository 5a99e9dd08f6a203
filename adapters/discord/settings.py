"""Discord-only settings (community controls, commands). Contract settings live in core.settings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Csv = Annotated[tuple[str, ...], NoDecode]
CsvInts = Annotated[tuple[int, ...], NoDecode]


class DiscordSettings(BaseSettings):
    """Read from DISCORD_* environment variables (and .env), like the core settings."""

    # env_ignore_empty: `DISCORD_ALLOW_DMS=` (as .env templates list every variable) means
    # unset, the default, not an invalid boolean.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        populate_by_name=True, env_ignore_empty=True,
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
    # Sharding (required by Discord from 2,500 servers): this process runs the shards
    # DISCORD_SHARD_IDS (default: all) of DISCORD_SHARD_COUNT; shard processes share
    # DATABASE_URL (PostgreSQL). Unset: one unsharded connection.
    shard_count: int | None = Field(None, alias="DISCORD_SHARD_COUNT", ge=1)
    shard_ids: CsvInts = Field((), alias="DISCORD_SHARD_IDS")

    @field_validator(
        "blocked_channels", "blocked_roles", "blocked_users", "admin_users", "models",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        return value

    @field_validator("application_id")
    @classmethod
    def _snowflake(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().isdigit():
            raise ValueError(
                "must be the application's numeric id "
                "(Developer Portal → your app → General Information → Application ID)"
            )
        return value.strip() if value is not None else None

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        return value

    @field_validator("shard_count", mode="before")
    @classmethod
    def _blank_count(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordSettings:
        if self.shard_ids and self.shard_count is None:
            raise ValueError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total shards)")
        count = self.shard_count or 0
        outside = sorted({i for i in self.shard_ids if not 0 <= i < count})
        if outside:
            raise ValueError(
                f"DISCORD_SHARD_IDS must lie in 0..{count - 1} (DISCORD_SHARD_COUNT={count}); "
                f"got {', '.join(map(str, outside))}"
            )
        return self


def load_discord_settings(**overrides: Any) -> DiscordSettings:
    """Read the environment (and .env); keyword overrides use the DISCORD_* names."""
    return DiscordSettings(**overrides)
