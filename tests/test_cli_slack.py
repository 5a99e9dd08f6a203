"""`threadwise slack` start-up as an operator sees it: real processes, real signals."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.cli_runner import Runner, clean_env, finish, start
from tests.fakes.log_capture import LogHygiene
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import SlackServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slack_env(tmp_path: Path, slack: SlackServer, model: FakeModelServer,
              **extra: str) -> dict[str, str]:
    return clean_env(tmp_path, MODEL_BASE_URL=model.base_url, MODEL_API_KEY="k",
                     SLACK_API_URL=slack.api_url, SLACK_BOT_TOKEN=slack.cfg.bot_token,
                     PORT=str(_free_port()), **extra)


async def refused_at_start(cli: Runner, env: dict[str, str], says: str) -> tuple[str, str]:
    """`threadwise slack` exits 2 at once with one line starting with `says`: that line,
    and all it wrote to stderr."""
    code, _, err = await cli(["slack"], env, within_s=20)
    [line] = [x for x in err.splitlines() if x.startswith("threadwise")]
    assert code == 2 and line.startswith(f"threadwise: {says}"), err
    assert "Traceback" not in err
    return line, err


@pytest.mark.parametrize(("app_token", "says"), [
    ("xapp-wrong", "Slack rejected SLACK_APP_TOKEN: invalid_auth"),
    ("bot", "SLACK_APP_TOKEN holds a bot token (xoxb-…)"),
])
async def test_a_wrong_or_swapped_app_token_exits_2_at_once(
    cli: Runner, slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    app_token: str, says: str,
) -> None:
    token = slack_server.cfg.bot_token if app_token == "bot" else app_token
    env = slack_env(tmp_path, slack_server, model_server, SLACK_APP_TOKEN=token)
    line, _ = await refused_at_start(cli, env, says)  # it used to retry forever
    assert "xapp-…" in line
    code, out, _ = await cli(["check"], env)
    assert code == 1 and "[FAIL] slack app token" in out
    assert ("invalid_auth" if app_token != "bot" else "bot token") in out


@pytest.mark.parametrize(("bot_token", "says"), [
    ("app", "SLACK_BOT_TOKEN holds the app-level token (xapp-…)"),
    ("xoxp-1-2-3-abcdef", "SLACK_BOT_TOKEN holds a user token (xoxp-…)"),
    ("hunter2-not-a-token", "SLACK_BOT_TOKEN is not a bot token (xoxb-…)"),
])
async def test_a_bot_token_that_is_not_one_exits_2_before_slack_is_asked(
    cli: Runner, slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    bot_token: str, says: str,
) -> None:
    token = slack_server.cfg.app_token if bot_token == "app" else bot_token
    env = slack_env(tmp_path, slack_server, model_server, SLACK_APP_TOKEN=token)
    env["SLACK_BOT_TOKEN"] = token  # both the same: the usual copy-paste slip
    line, err = await refused_at_start(cli, env, says)
    assert "OAuth & Permissions" in line and token not in err
    code, out, _ = await cli(["check"], env)
    assert code == 1 and f"[FAIL] slack bot token: {says}" in out and token not in out
    assert slack_server.calls_to("auth.test") == []  # judged without a round trip


async def test_sigterm_stops_the_bot_while_it_is_still_connecting(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> None:
    # Slack hands out a websocket URL nobody answers: slack_sdk retries it forever.
    slack_server.api.socket_url = lambda: "ws://127.0.0.1:9/socket"
    env = slack_env(tmp_path, slack_server, model_server,
                    SLACK_APP_TOKEN=slack_server.cfg.app_token)
    proc = await start(["slack"], env)
    healthz = f"http://127.0.0.1:{env['PORT']}/healthz"
    async with aiohttp.ClientSession() as http:
        await slack_server.wait_until(
            lambda: bool(slack_server.calls_to("apps.connections.open")), 10
        )
        async with http.get(healthz) as resp:
            assert resp.status == 503  # listening, not connected
    proc.send_signal(signal.SIGTERM)
    code, _, err = await finish(proc, within_s=15)
    log_hygiene.check_output(err, "threadwise slack (SIGTERM)")
    assert code == 0, err
    assert "stopped before the Slack bot was connected" in err


async def test_a_normal_start_logs_no_sdk_warning_and_sigterm_stops_it(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> None:
    env = slack_env(tmp_path, slack_server, model_server,
                    SLACK_SIGNING_SECRET=slack_server.signing_secret)
    proc = await start(["slack"], env)
    healthz = f"http://127.0.0.1:{env['PORT']}/healthz"
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(healthz) as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, _, err = await finish(proc, within_s=30)
    log_hygiene.check_output(err, "threadwise slack")
    assert code == 0 and "Slack bot ready" in err, err
    assert "WARNING" not in err and "will be unused" not in err, err


@pytest.mark.parametrize(("bot_token", "app_token", "says"), [
    # HTTP mode: the wrong token comes before the missing signing secret.
    ("xoxp-1-2-3-abcdef", None,
     "SLACK_BOT_TOKEN holds a user token (xoxp-…): use the Bot User OAuth Token (xoxb-…) "
     "from OAuth & Permissions (also missing: SLACK_SIGNING_SECRET)"),
    # The app-level token in the bot's slot: its fix is Socket Mode, which needs no secret.
    ("app", None, "SLACK_BOT_TOKEN holds the app-level token (xapp-…): use the Bot User "
                  "OAuth Token (xoxb-…) from OAuth & Permissions"),
    # Socket Mode (SLACK_APP_TOKEN set): the signing secret is never missing.
    ("hunter2-not-a-token", "app", "SLACK_BOT_TOKEN is not a bot token (xoxb-…): use the Bot "
                                   "User OAuth Token (xoxb-…) from OAuth & Permissions"),
])
async def test_a_wrong_bot_token_is_named_before_a_missing_signing_secret(
    cli: Runner, slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    bot_token: str, app_token: str | None, says: str,
) -> None:
    app = slack_server.cfg.app_token
    env = slack_env(tmp_path, slack_server, model_server)  # no SLACK_SIGNING_SECRET
    env["SLACK_BOT_TOKEN"] = app if bot_token == "app" else bot_token
    if app_token is not None:
        env["SLACK_APP_TOKEN"] = app
    line, err = await refused_at_start(cli, env, says)
    assert line == f"threadwise: {says}", err
    assert slack_server.calls == []  # judged without a round trip
    if bot_token == "app" or app_token is not None:
        assert "SLACK_SIGNING_SECRET" not in err
