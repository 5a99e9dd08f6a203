"""Operator-facing Discord entry points: invite URL, `threadwise check`, endpoints, /healthz."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.endpoints import (
    DISCORD_API_BASE,
    DISCORD_GATEWAY,
    EndpointConflict,
    endpoints_overridden,
)
from adapters.discord.settings import DiscordSettings, load_discord_settings
from bots.cli import main
from bots.discord_bot import check_discord, invite_url, invite_url_for
from tests.fakes.discord_harness import bot_settings, start_bot
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_server import FakeModelServer

MINIMAL = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True,
    read_message_history=True,
)


def permissions_of(url: str) -> tuple[discord.Permissions, list[str], str]:
    query = parse_qs(urlparse(url).query)
    return (
        discord.Permissions(int(query["permissions"][0])),
        query["scope"][0].split(),
        query["client_id"][0],
    )


def test_invite_url_asks_for_minimal_permissions_and_both_scopes() -> None:
    perms, scopes, client_id = permissions_of(invite_url("123456789", auto_thread=False))
    assert client_id == "123456789"
    assert scopes == ["bot", "applications.commands"]
    assert perms == MINIMAL
    assert not (perms.attach_files or perms.embed_links or perms.mention_everyone
                or perms.administrator or perms.create_public_threads)


def test_invite_url_adds_thread_creation_only_in_auto_thread_mode() -> None:
    perms, _, _ = permissions_of(invite_url("1", auto_thread=True))
    assert perms.create_public_threads
    assert perms.value == MINIMAL.value | discord.Permissions(create_public_threads=True).value


async def test_invite_url_for_settings_reads_the_application_id_from_the_token(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    app_id = "1234567890123456789"
    token = base64.b64encode(app_id.encode()).decode().rstrip("=") + ".GhIjKl.secretpart"
    settings = bot_settings(discord_server, model_server, tmp_path / "db", DISCORD_TOKEN=token)
    assert permissions_of(await invite_url_for(settings))[2] == app_id
    # A token that does not carry the id: the application is looked up with it.
    settings = bot_settings(discord_server, model_server, tmp_path / "db")
    assert permissions_of(await invite_url_for(settings))[2] == discord_server.bot.id


def test_cli_prints_the_invite_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    token = base64.b64encode(b"42424242").decode().rstrip("=") + ".x.y"
    monkeypatch.setenv("DISCORD_TOKEN", token)
    monkeypatch.setenv("DISCORD_AUTO_THREAD", "true")
    assert main(["discord", "--invite-url"]) == 0
    perms, scopes, client_id = permissions_of(capsys.readouterr().out.strip())
    assert client_id == "42424242" and "applications.commands" in scopes
    assert perms.create_public_threads


async def test_check_reports_the_bot_and_its_message_content_intent(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = bot_settings(discord_server, model_server, tmp_path / "db")
    results = await check_discord(settings)
    assert [r.ok for r in results] == [True, True]
    assert f"logged in as threadwise (id {discord_server.bot.id})" in results[0].detail
    assert "enabled" in results[1].detail
    assert ("GET", "/api/v10/oauth2/applications/@me") in discord_server.state.rest_requests
    assert Route.BASE == DISCORD_API_BASE, "the override does not outlive the check"


async def test_check_says_plainly_when_the_token_is_rejected(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = bot_settings(discord_server, model_server, tmp_path / "db", DISCORD_TOKEN="bad")
    [result] = await check_discord(settings)
    assert not result.ok and "rejected" in result.detail
    assert "bad" not in result.detail


def test_endpoint_override_is_scoped_and_refuses_a_conflicting_client() -> None:
    with endpoints_overridden("http://127.0.0.1:1/api/v10/", "ws://127.0.0.1:1/gateway"):
        assert Route.BASE == "http://127.0.0.1:1/api/v10"
        assert yarl.URL("ws://127.0.0.1:1/gateway") == DiscordWebSocket.DEFAULT_GATEWAY
        with endpoints_overridden("http://127.0.0.1:1/api/v10", None):
            pass
        assert Route.BASE == "http://127.0.0.1:1/api/v10"
        with pytest.raises(EndpointConflict), endpoints_overridden("http://127.0.0.1:2", None):
            pass
    assert Route.BASE == DISCORD_API_BASE
    assert DiscordWebSocket.DEFAULT_GATEWAY == DISCORD_GATEWAY


def test_discord_only_settings_come_from_discord_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_BLOCKED_USERS", " 11, 22 ,")
    monkeypatch.setenv("DISCORD_DAILY_TOKEN_QUOTA", "5000")
    monkeypatch.setenv("DISCORD_ALLOW_DMS", "false")
    settings = load_discord_settings(_env_file=None)
    assert settings.blocked_users == ("11", "22")
    assert settings.daily_token_quota == 5000
    assert settings.allow_dms is False


def test_empty_discord_variables_count_as_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # .env templates list every variable with nothing after the `=`.
    names = [f.alias for f in DiscordSettings.model_fields.values() if f.alias]
    for name in names[: len(names) // 2]:
        monkeypatch.setenv(name, "")
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{name}=\n" for name in names[len(names) // 2:]))
    assert load_discord_settings(_env_file=dotenv) == load_discord_settings(_env_file=None)
    for name in names:
        monkeypatch.delenv(name, raising=False)
    assert load_discord_settings(_env_file=dotenv) == load_discord_settings(_env_file=None)


async def test_healthz_answers_once_the_bot_is_ready_and_metrics_are_served(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    answered = 'threadwise_turns_total{outcome="answered",platform="discord"} 1.0'
    async with start_bot(discord_server, model_server, tmp_path) as running:
        assert running.health is not None
        base = f"http://127.0.0.1:{running.health.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as health:
                assert health.status == 200
            await discord_server.user_says(discord_server.channel_id(), "count this turn")
            seen: list[str] = []

            async def scrape() -> None:
                async with session.get(f"{base}/metrics") as metrics:
                    seen.append(await metrics.text())

            while answered not in (seen[-1] if seen else ""):
                await scrape()
                assert len(seen) < 200, "the turn never showed up in /metrics"
                await asyncio.sleep(0.05)
