"""docker-compose.yml: no Docker engine here, so check what an engine would rely on.

The file must parse (anchors and merge keys resolved), run real `threadwise`
commands from the image's entrypoint, point every bot at the PostgreSQL service
with settings threadwise accepts, wait for the database to be healthy, check each
bot's /healthz, keep the data in a named volume, and cover every Discord shard once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.discord.settings import load_discord_settings
from bots.cli import build_parser
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BOT_COMMANDS = {"slack", "discord"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def bots(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service for name, service in compose["services"].items()
        if service.get("command", [None])[0] in BOT_COMMANDS
    }


def interpolate(value: str) -> str:
    """Compose's ${VAR:?message} with a sample value, as `docker compose config` would."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: f"sample{m.group(1).lower()}", value)


def test_the_image_runs_threadwise_so_commands_are_cli_subcommands(
    compose: dict[str, Any],
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["threadwise"]' in dockerfile
    found = bots(compose)
    assert {"slack", "discord-shard-0", "discord-shard-1"} <= set(found)
    for name, service in found.items():
        args = build_parser().parse_args(service["command"])  # exits on an unknown command
        assert args.command == service["command"][0], name
        assert service["build"] == "." and service["env_file"] == ".env", name


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_health(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    volume, target = postgres["volumes"][0].split(":", 1)
    assert volume in compose["volumes"] and target == "/var/lib/postgresql/data"
    env = postgres["environment"]
    check = " ".join(postgres["healthcheck"]["test"])
    assert "pg_isready" in check and f"-U {env['POSTGRES_USER']}" in check
    assert f"-d {env['POSTGRES_DB']}" in check


def test_every_bot_shares_the_postgres_database_and_waits_for_it(
    compose: dict[str, Any],
) -> None:
    env = compose["services"]["postgres"]["environment"]
    for name, service in bots(compose).items():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        url = interpolate(service["environment"]["DATABASE_URL"])
        assert url == (
            f"postgresql://{env['POSTGRES_USER']}:samplepostgres_password@postgres:5432/"
            f"{env['POSTGRES_DB']}"
        ), name
        assert interpolate(env["POSTGRES_PASSWORD"]) == "samplepostgres_password"
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, DATABASE_URL=url, PORT=service["environment"]["PORT"]
        )
        assert settings.database_url.startswith("postgresql://")


def test_every_bot_is_health_checked_on_its_own_port(compose: dict[str, Any]) -> None:
    for name, service in bots(compose).items():
        port = service["environment"]["PORT"]
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in probe, name
        # Longer than the bot's own shutdown grace (20 s), so running replies finish.
        assert int(service["stop_grace_period"].removesuffix("s")) > 20, name


def test_two_slack_replicas_and_each_discord_shard_exactly_once(
    compose: dict[str, Any],
) -> None:
    assert compose["services"]["slack"]["deploy"]["replicas"] >= 2
    shards: list[int] = []
    counts: set[int] = set()
    for service in bots(compose).values():
        if service["command"][0] != "discord":
            continue
        env = service["environment"]
        assert "DATABASE_URL" in env  # the merged anchor kept the shared settings
        parsed = load_discord_settings(
            _env_file=None, DISCORD_SHARD_COUNT=env["DISCORD_SHARD_COUNT"],
            DISCORD_SHARD_IDS=env["DISCORD_SHARD_IDS"],
        )
        assert parsed.shard_count is not None
        counts.add(parsed.shard_count)
        shards.extend(parsed.shard_ids)
    [count] = counts
    assert sorted(shards) == list(range(count))
