"""Configuration as operators write it (.env templates, --env-file), through the real CLI."""

from __future__ import annotations

from pathlib import Path

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
