"""Configuration as operators write it (.env templates, --env-file), through the real CLI."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fakes.cli_runner import Runner, clean_env
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import SlackServer


async def test_an_empty_key_variable_is_unset_so_the_fallback_key_is_used(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Hi there.")
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="",
                    GMI_API_KEY="gmi-fallback-key-42")
    code, out, err = await cli(["chat"], env, stdin=b"hello\n/quit\n")
    assert code == 0, err
    assert "Hi there." in out and "Traceback" not in err
    assert model_server.requests[0].headers["authorization"] == "Bearer gmi-fallback-key-42"


async def test_empty_slack_tokens_are_unset_not_sent_to_slack(
    cli: Runner, slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    base = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="k",
                     SLACK_API_URL=slack_server.api_url)
    # SLACK_APP_TOKEN= means HTTP mode, not Socket Mode with an empty token.
    env = {**base, "SLACK_BOT_TOKEN": slack_server.cfg.bot_token, "SLACK_APP_TOKEN": "",
           "SLACK_SIGNING_SECRET": slack_server.signing_secret}
    code, out, err = await cli(["check"], env)
    assert code == 0, out + err
    assert "[ok  ] slack mode: HTTP mode" in out and "not_authed" not in out
    # SLACK_BOT_TOKEN= is "not set", not a token Slack rejects.
    code, _, err = await cli(["slack"], {**base, "SLACK_BOT_TOKEN": " ",
                                         "SLACK_APP_TOKEN": ""})
    assert code == 2 and err.startswith("threadwise: SLACK_BOT_TOKEN is not set"), err


def one_line(err: str) -> str:
    [line] = [x for x in err.splitlines() if x.startswith("threadwise")]
    assert "Traceback" not in err, err
    return line


async def test_bad_slack_history_settings_exit_2_naming_the_variable(
    cli: Runner, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_API_KEY="k", SLACK_BOT_TOKEN="xoxb-1",
                    SLACK_SIGNING_SECRET="s", SLACK_API_URL="http://127.0.0.1:9/api/")
    code, _, err = await cli(["slack"], {**env, "SLACK_HISTORY_PER_MIN": "abc"})
    assert code == 2 and "SLACK_HISTORY_PER_MIN: Input should be a valid number" in one_line(err)
    link = "https://x.slack.com/archives/C0GENERAL/p1700000000000100"
    code, _, err = await cli(["summarize", link], {**env, "SLACK_HISTORY_PAGE_SIZE": "5000"})
    assert code == 2 and "SLACK_HISTORY_PAGE_SIZE: Input should be less than or equal to 1000" \
        in one_line(err)


async def test_check_reports_invalid_platform_settings(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="k",
                    SLACK_HISTORY_PER_MIN="abc", DISCORD_USER_RATE_PER_MIN="-1")
    code, out, err = await cli(["check"], env)
    assert code == 1 and "all checks passed" not in err
    assert "[FAIL] slack settings: SLACK_HISTORY_PER_MIN" in out
    assert "[FAIL] discord settings: DISCORD_USER_RATE_PER_MIN" in out


def _as_another_user() -> list[str]:
    """A command prefix under which file permissions apply (they never do to root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


async def test_a_database_in_a_read_only_directory_is_called_read_only(tmp_path: Path) -> None:
    prefix = _as_another_user()
    with tempfile.TemporaryDirectory() as top:  # under /tmp: reachable by the other user
        locked = Path(top) / "readonly"
        locked.mkdir()
        os.chmod(top, 0o755)
        os.chmod(locked, 0o555)
        env = clean_env(tmp_path, DATABASE_URL=f"sqlite:///{locked / 'tw.db'}",
                        MODEL_BASE_URL="http://127.0.0.1:9/v1", MODEL_MAX_RETRIES="0")
        proc = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-m", "bots.cli", "check", env=env, cwd=top,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        os.chmod(locked, 0o755)
    [line] = [x for x in out.decode().splitlines() if x.startswith("[FAIL] database")]
    assert f"its directory {locked} is read-only" in line, line
    assert "check that the path exists" not in line


async def test_choice_settings_ignore_case_like_log_level(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API="Chat",
                    LOG_FORMAT="JSON", LOG_LEVEL="info")
    code, out, err = await cli(["check"], env)
    assert code == 0, out + err
    logged = [line for line in err.splitlines() if line.startswith("{")]
    assert logged and all('"level": ' in line for line in logged), err  # JSON log lines


async def test_a_non_utf8_env_file_is_named(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes("MODEL_NAME=café\n".encode("latin-1"))
    code, _, err = await cli(["check"], clean_env(tmp_path), cwd=tmp_path)
    line = one_line(err)
    assert code == 2 and f"{tmp_path / '.env'} is not UTF-8 text" in line, err
