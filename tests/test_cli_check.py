"""`threadwise check` as an operator reads it: what is wrong, and how to fix it."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.cli_runner import Runner, clean_env
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import SlackServer


async def test_check_needs_no_key_for_a_loopback_model_server(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url)  # no key at all
    code, out, err = await cli(["check"], env)
    assert code == 0, out + err
    assert "[ok  ] model" in out and "no key" not in out
    assert model_server.requests, "check sent its tiny request without a key"


async def check_model_line(cli: Runner, tmp_path: Path, base_url: str) -> str:
    env = clean_env(tmp_path, MODEL_BASE_URL=base_url, MODEL_API_KEY="sk-checksecret123456789",
                    MODEL_MAX_RETRIES="0")
    code, out, err = await cli(["check"], env)
    assert code == 1, out + err
    [line] = [x for x in out.splitlines() if x.startswith("[FAIL] model")]
    assert "sk-checksecret123456789" not in out + err
    assert "model call failed" not in err, "the failure is shown once, as its [FAIL] line"
    return line


async def test_check_shows_why_the_model_server_could_not_be_reached(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    refused = await check_model_line(cli, tmp_path, "http://127.0.0.1:9/v1")
    assert "could not reach the model provider at 127.0.0.1:9: " in refused
    assert "Connect call failed" in refused or "refused" in refused.lower()
    tls = await check_model_line(cli, tmp_path, model_server.base_url.replace("http:", "https:"))
    assert "WRONG_VERSION_NUMBER" in tls and "use http://" in tls


async def test_check_hints_at_v1_when_the_endpoint_is_not_found(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    without_v1 = model_server.base_url.removesuffix("/").removesuffix("/v1")
    line = await check_model_line(cli, tmp_path, without_v1)
    assert "(404)" in line and "does MODEL_BASE_URL end in /v1?" in line


async def test_check_names_a_swapped_app_token_even_when_slack_is_unreachable(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url,
                    SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xoxb-2",
                    SLACK_API_URL="http://127.0.0.1:9/api/")  # nothing listens there
    code, out, err = await cli(["check"], env)
    assert code == 1, out + err
    [line] = [x for x in out.splitlines() if x.startswith("[FAIL] slack app token")]
    assert "holds a bot token" in line


async def test_a_conversation_that_meets_a_404_logs_the_same_hint_for_the_operator(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    without_v1 = model_server.base_url.removesuffix("/").removesuffix("/v1")
    env = clean_env(tmp_path, MODEL_BASE_URL=without_v1, MODEL_MAX_RETRIES="0")
    code, out, err = await cli(["chat"], env, stdin=b"hello\n/quit\n")
    assert code == 0, err
    assert "does not know this model or endpoint (404)" in out  # the reader is told why
    [logged] = [line for line in err.splitlines() if "model failed" in line]
    assert logged.endswith("(does MODEL_BASE_URL end in /v1?)")


async def test_check_fails_a_bot_token_of_the_wrong_kind_without_calling_it_fine_first(
    cli: Runner, slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url,
                    SLACK_API_URL=slack_server.api_url, SLACK_BOT_TOKEN="xoxp-1-2-3-userly",
                    SLACK_SIGNING_SECRET=slack_server.signing_secret)
    code, out, err = await cli(["check"], env)
    assert code == 1, out + err
    slack = [x for x in out.splitlines() if x.split("] ", 1)[-1].startswith("slack")]
    assert slack[0] == ("[FAIL] slack bot token: SLACK_BOT_TOKEN holds a user token (xoxp-…): "
                        "use the Bot User OAuth Token (xoxb-…) from OAuth & Permissions"), out
    assert not any(x.startswith("[ok  ] slack") for x in slack), out  # nothing said it was fine
    assert "xoxp-1-2-3-userly" not in out + err
    assert slack_server.calls == [], "a token that is clearly not a bot token went to Slack"


async def test_check_says_in_plain_words_why_slack_could_not_be_reached(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    token = "xoxb-1-unreachable-secret"
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, SLACK_BOT_TOKEN=token,
                    SLACK_SIGNING_SECRET="signing-secret-42",
                    SLACK_API_URL="http://127.0.0.1:9/api/")  # nothing listens there
    code, out, err = await cli(["check"], env)
    assert code == 1, out + err
    [line] = [x for x in out.splitlines() if x.startswith("[FAIL] slack bot token")]
    assert line.startswith("[FAIL] slack bot token: could not reach http://127.0.0.1:9/api/: ")
    assert "Connect call failed ('127.0.0.1', 9)" in line or "refused" in line.lower(), line
    assert "Error" not in line.removeprefix("[FAIL] slack bot token: could not reach"), line
    assert token not in out + err and "signing-secret-42" not in out + err
