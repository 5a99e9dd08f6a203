"""The command line as an operator uses it: real processes, real exit codes."""

from __future__ import annotations

import asyncio
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest

from core.summary_service import MAX_HOURS
from tests.fakes.cli_runner import ROOT, Runner, clean_env
from tests.fakes.model_server import FakeModelServer


async def test_help_lists_every_command(cli: Runner, tmp_path: Path) -> None:
    code, out, _ = await cli(["--help"], clean_env(tmp_path))
    assert code == 0
    for command in ("slack", "discord", "chat", "summarize", "check", "manifest"):
        assert command in out


async def test_a_bare_threadwise_shows_the_commands_not_just_a_usage_error(
    cli: Runner, tmp_path: Path
) -> None:
    code, out, err = await cli([], clean_env(tmp_path))
    assert code == 2 and out == ""
    assert "threadwise check" in err and "run the Discord bot" in err  # the whole help
    assert "arguments are required" not in err


@pytest.mark.parametrize(("command", "says"), [
    ("slack", ["Socket Mode when SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "/healthz"]),
    ("check", ["send the model one tiny request", "exit 0 when all pass"]),
    ("manifest", ["api.slack.com/apps", "HTTP mode"]),
    ("chat", ["/image PATH", "/reset", "/help", "/quit"]),
    ("summarize", [f"1–{MAX_HOURS}", "SLACK_BOT_TOKEN", "DISCORD_TOKEN"]),
])
async def test_each_command_help_says_what_it_does(
    cli: Runner, tmp_path: Path, command: str, says: list[str]
) -> None:
    code, out, _ = await cli([command, "--help"], clean_env(tmp_path))
    assert code == 0
    description = out.split("\n\n")[1]  # the paragraph after the usage line
    assert not description.startswith(("positional arguments", "options")), out
    for words in says:
        assert words in out


async def test_version_comes_from_the_package_metadata(cli: Runner, tmp_path: Path) -> None:
    code, out, _ = await cli(["--version"], clean_env(tmp_path))
    assert code == 0 and out == f"threadwise {metadata.version('threadwise')}\n"


async def test_invalid_setting_exits_2_with_one_line_naming_it(cli: Runner, tmp_path: Path) -> None:
    code, out, err = await cli(["chat"], clean_env(tmp_path, MODEL_API="soap",
                                                   MODEL_API_KEY="sk-secretvalue123456"))
    assert code == 2
    assert err.count("\n") == 1 and "MODEL_API" in err and "Traceback" not in err
    assert "sk-secretvalue123456" not in err + out


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:99999/v1", "MODEL_BASE_URL: is not a valid URL (Port out of range"),
    ("http://[::1", "MODEL_BASE_URL: is not a valid URL (Invalid IPv6 URL)"),
    ("http://", "MODEL_BASE_URL: names no host"),
    ("http://model host/v1", "MODEL_BASE_URL: contains a space or a control character"),
])
async def test_a_malformed_base_url_exits_2_naming_it_not_a_traceback(
    cli: Runner, tmp_path: Path, url: str, says: str
) -> None:
    code, _, err = await cli(["check"], clean_env(tmp_path, MODEL_BASE_URL=url))
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("threadwise: invalid configuration: ")
    assert says in err


async def test_a_stray_carriage_return_after_a_url_is_ignored(
    cli: Runner, tmp_path: Path
) -> None:
    # `docker --env-file` with a file saved with Windows line ends keeps the \r.
    env = clean_env(tmp_path, MODEL_BASE_URL="http://127.0.0.1:9/v1\r", MODEL_API_KEY="k")
    code, out, err = await cli(["check"], env)
    assert code == 1 and "Traceback" not in err, err
    assert "(chat API at http://127.0.0.1:9/v1/): could not reach" in out


async def test_bad_json_in_extra_body_is_named(cli: Runner, tmp_path: Path) -> None:
    code, _, err = await cli(["check"], clean_env(tmp_path, MODEL_EXTRA_BODY="{top_k: 40"))
    assert code == 2 and "MODEL_EXTRA_BODY" in err and "JSON" in err


async def test_missing_key_exits_2_and_says_how_to_fix(cli: Runner, tmp_path: Path) -> None:
    code, _, err = await cli(["chat"], clean_env(tmp_path))
    assert code == 2
    assert "MODEL_API_KEY" in err and "GMI_API_KEY" in err


async def test_slack_without_tokens_exits_2(cli: Runner, tmp_path: Path) -> None:
    code, _, err = await cli(["slack"], clean_env(tmp_path, MODEL_API_KEY="k"))
    assert code == 2 and "SLACK_BOT_TOKEN" in err


@pytest.mark.parametrize("command", ["slack", "discord"])
async def test_an_unreachable_platform_at_start_up_is_one_line_not_a_traceback(
    cli: Runner, tmp_path: Path, command: str
) -> None:
    closed = "http://127.0.0.1:9"  # nothing listens there
    env = clean_env(tmp_path, MODEL_API_KEY="k", SLACK_BOT_TOKEN="xoxb-1",
                    SLACK_APP_TOKEN="xapp-1", SLACK_API_URL=closed + "/api/",
                    DISCORD_TOKEN="t.o.k", DISCORD_API_URL=closed + "/api/v10",
                    PORT="0")  # any free port: 3000 may be taken on a shared machine
    code, _, err = await cli([command], env)
    assert code == 1, err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("threadwise ")]
    assert line.startswith(f"threadwise {command}: ") and "127.0.0.1:9" in line


async def test_check_reaches_the_model(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="k")
    code, out, _ = await cli(["check"], env)
    assert code == 0, out
    assert "[ok  ] model" in out and "[ok  ] database" in out
    assert model_server.requests, "check sent one tiny request"


async def test_check_reports_a_failing_model(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.fail(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error",
                                      "code": "invalid_api_key"}})
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="k",
                    MODEL_MAX_RETRIES="0")
    code, out, _ = await cli(["check"], env)
    assert code == 1
    assert "[FAIL] model" in out and "Invalid API key" in out


async def test_chat_holds_a_streamed_multi_turn_conversation(
    cli: Runner,
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Hello Ada, nice to meet you.", tokens_per_s=100)
    model_server.reply("Your name is Ada.")
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="k",
                    USER="ada")
    code, out, err = await cli(["chat"], env, stdin=b"I am Ada\nwho am I?\n/quit\n")
    assert code == 0, err
    assert "Hello Ada, nice to meet you." in out and "Your name is Ada." in out
    second = str(model_server.requests[-1].body)
    assert "I am Ada" in second and "Hello Ada, nice to meet you." in second


async def test_chat_attaches_an_image_and_resets(
    cli: Runner,
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    from PIL import Image

    picture = tmp_path / "pic.png"
    Image.new("RGB", (3000, 1000), "blue").save(picture)
    model_server.reply("A blue banner.")
    model_server.reply("Fresh start.")
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url, MODEL_API_KEY="k")
    script = f"/image {picture}\nwhat is it?\n/reset\nhello\n/quit\n".encode()
    code, out, err = await cli(["chat"], env, stdin=script)
    assert code == 0, err
    assert "attached pic.png" in out and "A blue banner." in out and "history cleared" in out
    assert "data:image/" in str(model_server.requests[0].body)
    assert "what is it?" not in str(model_server.requests[1].body)


async def test_chat_does_not_print_http_request_lines_inside_the_answer(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.reply("Quiet answer.")
    model_server.reply("Loud answer.")
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url)
    code, out, err = await cli(["chat"], env, stdin=b"hello\n/quit\n")
    assert code == 0 and "Quiet answer." in out, err
    assert "HTTP Request" not in out + err
    # LOG_LEVEL=DEBUG is how an operator asks for them.
    code, out, err = await cli(["chat"], {**env, "LOG_LEVEL": "DEBUG"}, stdin=b"hi\n/quit\n")
    assert code == 0 and "HTTP Request: POST" in err


async def test_chat_answers_an_unknown_command_itself(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url)
    code, out, err = await cli(["chat"], env, stdin=b"/bogus\n/quit\n")
    assert code == 0, err
    assert "unknown command /bogus, try /help" in out
    assert model_server.requests == []  # the typo never reached the model


async def test_output_cut_short_by_its_reader_is_not_an_error(tmp_path: Path) -> None:
    # `threadwise manifest slack | head`: head leaves after ten lines, closing the pipe.
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "manifest", "slack", env=clean_env(tmp_path),
        cwd=ROOT, stdout=write_end, stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
