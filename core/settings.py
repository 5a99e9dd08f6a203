"""Configuration: the environment contract from DESIGN.md, read by pydantic-settings.

Variable names are a contract (deployments rely on them); do not rename.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Csv = Annotated[tuple[str, ...], NoDecode]

DEFAULT_SYSTEM_PROMPT = (
    "You are threadwise, a helpful assistant in a team chat. Answer concisely and "
    "accurately in Markdown. Several people may speak in one thread; each user turn "
    "is labelled with the speaker's name. If you are unsure, say so."
)

# Context windows of models we know; anything else gets 128k.
KNOWN_CONTEXT_TOKENS: dict[str, int] = {
    "gpt-5.5": 1_050_000,
    "gpt-5.4-mini": 400_000,
    "gpt-5.4": 400_000,
    "gpt-5.2-chat": 128_000,
    "gpt-5.2": 400_000,
    "gpt-5-mini": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
}


def _well_formed(value: str, schemes: tuple[str, ...]) -> str:
    """A URL the HTTP clients can use, or one clear reason (never their traceback later).
    Surrounding whitespace goes: an env file saved with Windows line ends leaves a \r."""
    value = value.strip()
    if not value.startswith(schemes):
        raise ValueError(f"must start with {' or '.join(schemes)}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("contains a space or a control character")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if not parts.hostname:
        raise ValueError(f"names no host, e.g. {schemes[-1]}api.example.com")
    return value


def bare_model_name(name: str) -> str:
    """'openai/gpt-5.4-mini' -> 'gpt-5.4-mini' (providers prefix the vendor)."""
    return name.rsplit("/", 1)[-1]


def is_loopback_url(url: str) -> bool:
    """True for http(s)://localhost, 127.x.x.x or [::1] URLs (local model servers need no key)."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    host = host.rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    return host in ("localhost", "::1") or host.startswith("127.")


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        # `MODEL_API_KEY=` in a .env template or --env-file means "not set": otherwise
        # the empty key hides GMI_API_KEY and an empty SLACK_APP_TOKEN forces Socket Mode.
        env_ignore_empty=True,
    )

    # --- model -------------------------------------------------------------
    model_base_url: str = Field("https://api.gmi-serving.com/v1/", alias="MODEL_BASE_URL")
    model_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MODEL_API_KEY", "GMI_API_KEY", "OPENAI_API_KEY")
    )
    model_name: str = Field("openai/gpt-5.4-mini", alias="MODEL_NAME")
    model_api: Literal["chat", "responses"] = Field("chat", alias="MODEL_API")
    model_reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = (
        Field(None, alias="MODEL_REASONING_EFFORT")
    )
    model_verbosity: Literal["low", "medium", "high"] | None = Field(None, alias="MODEL_VERBOSITY")
    model_max_completion_tokens: int | None = Field(
        None, alias="MODEL_MAX_COMPLETION_TOKENS", gt=0
    )
    model_temperature: float | None = Field(None, alias="MODEL_TEMPERATURE", ge=0, le=2)
    model_top_p: float | None = Field(None, alias="MODEL_TOP_P", ge=0, le=1)
    model_extra_body: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, alias="MODEL_EXTRA_BODY"
    )
    model_image_detail: Literal["low", "high", "auto"] = Field("auto", alias="MODEL_IMAGE_DETAIL")
    model_tools: Csv = Field((), alias="MODEL_TOOLS")
    model_context_tokens: int | None = Field(None, alias="MODEL_CONTEXT_TOKENS", gt=1000)
    model_timeout_s: float = Field(120.0, alias="MODEL_TIMEOUT", gt=0)
    model_max_retries: int = Field(2, alias="MODEL_MAX_RETRIES", ge=0, le=10)
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, alias="SYSTEM_PROMPT")

    # --- storage -----------------------------------------------------------
    database_url: str = Field("sqlite:///threadwise.db", alias="DATABASE_URL")

    # --- slack -------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    slack_file_hosts: Csv = Field(("files.slack.com",), alias="SLACK_FILE_HOSTS")
    slack_allowed_channels: Csv = Field((), alias="SLACK_ALLOWED_CHANNELS")
    slack_follow_threads: bool = Field(True, alias="SLACK_FOLLOW_THREADS")
    port: int = Field(3000, alias="PORT", ge=0, le=65535)

    # --- discord -----------------------------------------------------------
    discord_token: SecretStr | None = Field(None, alias="DISCORD_TOKEN")
    discord_api_url: str | None = Field(None, alias="DISCORD_API_URL")
    discord_gateway_url: str | None = Field(None, alias="DISCORD_GATEWAY_URL")
    discord_allowed_channels: Csv = Field((), alias="DISCORD_ALLOWED_CHANNELS")
    discord_allowed_roles: Csv = Field((), alias="DISCORD_ALLOWED_ROLES")

    # --- operations --------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="LOG_FORMAT")
    # Per-channel overrides (core/channel_overrides.py); read once at start-up.
    threadwise_config: str | None = Field(None, alias="THREADWISE_CONFIG")

    # --- several processes (not part of the contract) ------------------------
    # How long a thread's lease outlives a process that died holding it; a live
    # holder renews it every third of this. Lower it only with a reason (tests).
    lease_ttl_s: float = Field(30.0, alias="THREADWISE_LEASE_TTL_S", gt=0)
    # How often to look for replies left 'streaming' by a dead process in threads
    # nobody writes in any more (and once at start-up); 0 turns the sweeper off.
    orphan_sweep_s: float = Field(60.0, alias="THREADWISE_ORPHAN_SWEEP_S", ge=0)

    # --- limits (sane defaults; not part of the contract) -------------------
    max_attachments: int = Field(8, alias="MAX_ATTACHMENTS", ge=0)
    max_file_bytes: int = Field(20 * 1024 * 1024, alias="MAX_FILE_BYTES", gt=0)
    max_turn_media_bytes: int = Field(40 * 1024 * 1024, alias="MAX_TURN_MEDIA_BYTES", gt=0)
    max_tool_rounds: int = Field(4, alias="MAX_TOOL_ROUNDS", ge=1, le=16)

    @field_validator(
        "model_tools",
        "slack_file_hosts",
        "slack_allowed_channels",
        "discord_allowed_channels",
        "discord_allowed_roles",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("model_extra_body", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not valid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object, e.g. {\"top_k\": 40}")
        return value

    @field_validator(
        "model_reasoning_effort", "model_verbosity", "model_temperature", "model_top_p",
        "model_max_completion_tokens", "model_context_tokens", "model_api_key",
        "slack_bot_token", "slack_app_token", "slack_signing_secret", "discord_token",
        "discord_api_url", "discord_gateway_url", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:  # "  " too, not only "" (env_ignore_empty)
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "model_api", "log_format", "model_image_detail", "model_reasoning_effort",
        "model_verbosity", mode="before",
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:  # LOG_FORMAT=JSON works like LOG_LEVEL=info does
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_base_url", "slack_api_url")
    @classmethod
    def _slash(cls, value: str) -> str:
        value = _well_formed(value, ("http://", "https://"))
        return value if value.endswith("/") else value + "/"

    @field_validator("discord_api_url")
    @classmethod
    def _no_slash(cls, value: str | None) -> str | None:
        return None if value is None else _well_formed(value, ("http://", "https://")).rstrip("/")

    @field_validator("discord_gateway_url")
    @classmethod
    def _ws(cls, value: str | None) -> str | None:
        return None if value is None else _well_formed(value, ("ws://", "wss://"))

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///path.db or postgresql://user:pass@host/db")
        return value

    @property
    def context_tokens(self) -> int:
        if self.model_context_tokens:
            return self.model_context_tokens
        return KNOWN_CONTEXT_TOKENS.get(bare_model_name(self.model_name), 128_000)

    @property
    def sqlite_path(self) -> str | None:
        """Path for sqlite:///relative.db or sqlite:////absolute.db (SQLAlchemy form)."""
        if not self.database_url.startswith("sqlite:///"):
            return None
        return self.database_url[len("sqlite:///"):] or "threadwise.db"
