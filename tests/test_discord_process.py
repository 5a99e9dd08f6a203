"""`threadwise discord` as an operator runs it: a real process against the Discord emulator
and the fake model (both in this test process), judged by exit codes, stderr and what the
channel shows."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bots.logging_setup import VoiceSupportWarnings
from tests.fakes.bot_processes import ROOT, BotProcess, Fleet, clean_env
from tests.fakes.discord_payloads import FakeUser, Json, application_payload
from tests.fakes.discord_server import DiscordServer
from tests.fakes.known_secrets import MODEL_API_KEY
from tests.fakes.log_capture import LogHygiene
from tests.fakes.model_server import FakeModelServer

EXIT_WAIT_S = 30.0


def discord_env(server: DiscordServer, model: FakeModelServer, db: Path) -> dict[str, str]:
    return clean_env(
        MODEL_BASE_URL=model.base_url, MODEL_API_KEY=MODEL_API_KEY,
        DATABASE_URL=f"sqlite:///{db}", DISCORD_TOKEN=server.token,
        DISCORD_API_URL=server.api_url, DISCORD_GATEWAY_URL=server.gateway_url,
    )


@pytest_asyncio.fixture
async def fleet(tmp_path: Path, log_hygiene: LogHygiene) -> AsyncIterator[Fleet]:
    async with Fleet(tmp_path, "discord", scan=log_hygiene.check_output) as running:
        yield running


async def exit_code(bot: BotProcess) -> int:
    try:
        return await asyncio.wait_for(bot.proc.wait(), EXIT_WAIT_S)
    except TimeoutError:
        log = bot.log()[-3000:]
        raise AssertionError(f"still running {EXIT_WAIT_S:.0f} s later:\n{log}") from None


async def health(bot: BotProcess) -> int:
    async with aiohttp.ClientSession() as http, http.get(bot.url + "/healthz") as resp:
        return resp.status


async def run_to_exit(
    args: list[str], env: dict[str, str], hygiene: LogHygiene
) -> tuple[int, str, str]:
    """`threadwise ARGS` run to its end: exit code, stdout, stderr (scanned for secrets)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", *args, env=env, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), EXIT_WAIT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"threadwise {' '.join(args)} still running") from None
    hygiene.check_output((out + err).decode(errors="replace"), f"threadwise {args}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def stored_replies(db: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT status, text FROM messages WHERE role = 'assistant' ORDER BY id"
        ).fetchall()
    return [(str(status), str(text)) for status, text in rows]


NO_VOICE = "is not installed, voice will NOT be supported"  # discord.py, without PyNaCl/davey
ENDPOINT_SET = "Application has an interaction endpoint URL set"


async def test_the_start_up_log_has_no_voice_support_warning_but_keeps_discord_warnings(
    fleet: Fleet, discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Threadwise never joins voice, so discord.py's "PyNaCl/davey is not installed"
    warnings are left out; a warning that matters, from the same logger, still shows."""
    for library in ("nacl", "davey"):  # else discord.py would not warn, and this proves nothing
        with pytest.raises(ImportError):
            importlib.import_module(library)

    def with_endpoint(app_id: str, owner: FakeUser) -> Json:
        # A real misconfiguration discord.py warns about at login (discord.client).
        return {**application_payload(app_id, owner),
                "interactions_endpoint_url": "https://x.invalid/i"}

    # The emulator runs in this process: its REST API answers with the patched payload.
    monkeypatch.setattr("tests.fakes.discord_rest.application_payload", with_endpoint)
    env = discord_env(discord_server, model_server, tmp_path / "threadwise.db")
    [bot] = await fleet.start({**env, "LOG_LEVEL": "INFO"})
    general = discord_server.channel_id()
    await discord_server.user_says(general, "hello")
    await discord_server.until(lambda: bool(discord_server.bot_messages(general)))
    bot.proc.send_signal(signal.SIGTERM)
    assert await exit_code(bot) == 0, bot.log()[-3000:]

    log = bot.log()
    assert "PyNaCl" not in log and "davey" not in log and NO_VOICE not in log, log[-3000:]
    assert f"WARNING discord.client: {ENDPOINT_SET}" in log, log[-3000:]


def discord_client_record(message: str, level: int = logging.WARNING,
                          name: str = "discord.client") -> logging.LogRecord:
    return logging.LogRecord(name, level, "client.py", 1, message, None, None)


def test_the_voice_filter_drops_only_the_two_voice_library_warnings() -> None:
    keep = VoiceSupportWarnings().filter
    assert not keep(discord_client_record("PyNaCl is not installed, voice will NOT be supported"))
    assert not keep(discord_client_record("davey is not installed, voice will NOT be supported"))
    assert keep(discord_client_record(ENDPOINT_SET + ", this means registered components …"))
    assert keep(discord_client_record("Shard ID None heartbeat blocked for more than 10 seconds."))
    assert keep(discord_client_record("PyNaCl is not installed, voice will NOT be supported "
                                      "(and something else went wrong)"))
    assert keep(discord_client_record("PyNaCl is not installed, voice will NOT be supported",
                                      name="discord.gateway"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_mid_reply_lets_the_reply_finish_then_exits_0(
    fleet: Fleet, discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    sig: signal.Signals,
) -> None:
    """`docker stop` (SIGTERM) or Ctrl-C while the bot is writing: the answer still ends
    properly, /healthz says 503 and nobody new is answered meanwhile, and it exits 0."""
    server, db = discord_server, tmp_path / "threadwise.db"
    answer = " ".join(f"word{i}" for i in range(60))
    model_server.reply(answer, tokens_per_s=20)  # about 3 s of writing
    [bot] = await fleet.start(discord_env(server, model_server, db))
    general = server.channel_id()
    asked = await server.user_says(general, "tell me a long story")
    await server.until(lambda: any(m["content"] for m in server.bot_messages(general)))
    assert server.bot_messages(general)[0]["content"] != answer  # caught mid-reply

    bot.proc.send_signal(sig)
    await asyncio.sleep(0.3)
    assert await health(bot) == 503  # a load balancer or rolling deploy looks elsewhere
    late = await server.user_says(general, "and another one", author="bob")
    code = await exit_code(bot)

    assert code == 0, bot.log()[-3000:]
    [reply] = server.bot_messages(general)
    assert reply["content"] == answer
    assert reply["message_reference"]["message_id"] == asked
    assert not any(m.get("message_reference", {}).get("message_id") == late
                   for m in server.bot_messages(general))
    assert stored_replies(db) == [("complete", answer)]
    assert "Traceback" not in bot.log()


@pytest.mark.parametrize("where", ["nothing listens", "not a gateway"])
async def test_a_gateway_it_cannot_reach_is_one_line_and_exit_1(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene, where: str,
) -> None:
    """A mistyped DISCORD_GATEWAY_URL: the REST API answers (login works), the gateway
    does not. The operator gets one line naming the URL, not reconnect tracebacks."""
    env = discord_env(discord_server, model_server, tmp_path / "threadwise.db")
    env["LOG_LEVEL"] = "INFO"
    bad = ("ws://127.0.0.1:1/gateway" if where == "nothing listens"
           else discord_server.base.replace("http://", "ws://") + "/api/v10/gateway")
    env["DISCORD_GATEWAY_URL"] = bad
    code, _, err = await run_to_exit(["discord"], env, log_hygiene)
    assert code == 1, err[-3000:]
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("threadwise ")]
    assert line.startswith("threadwise discord: ")
    assert bad in line and "DISCORD_GATEWAY_URL" in line
    assert discord_server.identify_payloads == []


INVITE_FAILURES = {
    # case: (extra environment, what the one line must name)
    "a setting it cannot read": (
        {"DISCORD_AUTO_THREAD": "maybe", "DISCORD_APPLICATION_ID": "42"}, "DISCORD_AUTO_THREAD"),
    "an application id that is not one": (
        {"DISCORD_APPLICATION_ID": "my-bot"}, "DISCORD_APPLICATION_ID"),
    "a token Discord rejects": ({"DISCORD_TOKEN": "wrong"}, "DISCORD_TOKEN was rejected"),
    "Discord out of reach": (
        {"DISCORD_TOKEN": "wrong", "DISCORD_API_URL": "http://127.0.0.1:9/api/v10"},
        "set DISCORD_APPLICATION_ID"),
}


@pytest.mark.parametrize("case", list(INVITE_FAILURES))
async def test_invite_url_problems_are_one_line_and_exit_2(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene, case: str,
) -> None:
    extra, named = INVITE_FAILURES[case]
    env = discord_env(discord_server, model_server, tmp_path / "threadwise.db")
    env.update(extra)
    code, out, err = await run_to_exit(["discord", "--invite-url"], env, log_hygiene)
    assert (code, out) == (2, ""), err[-3000:]
    [line] = err.splitlines()
    assert line.startswith("threadwise: ") and named in line


@pytest.mark.parametrize("args", [["discord"], ["discord", "--invite-url"]])
async def test_an_empty_token_is_not_set_and_never_reaches_discord(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene, args: list[str],
) -> None:
    """`DISCORD_TOKEN=` as a .env template leaves it: the operator is told it is not set."""
    env = discord_env(discord_server, model_server, tmp_path / "threadwise.db")
    env["DISCORD_TOKEN"] = ""
    code, out, err = await run_to_exit(args, env, log_hygiene)
    assert (code, out) == (2, ""), err[-3000:]
    [line] = [x for x in err.splitlines() if x.startswith("threadwise")]
    assert line.startswith("threadwise: DISCORD_TOKEN is not set")
    assert discord_server.state.rest_requests == []
