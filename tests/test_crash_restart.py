"""kill -9 in the middle of a reply, then restart: the real `threadwise slack` process on
SQLite, against the Slack emulator and the fake model (both in this test process).

After the restart the next message in that thread is answered, the reply the dead
process left half-written is finalised with a visible marker, and history is intact.
A question it died on before writing a word is told, by the restarted process, to ask again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from core.orphans import INTERRUPTED, NOT_ANSWERED
from tests.fakes.known_secrets import MODEL_API_KEY
from tests.fakes.log_capture import LogHygiene
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import Post, SlackServer

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0GENERAL"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_env(slack: SlackServer, model: FakeModelServer, db: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODEL_", "SLACK_", "DISCORD_", "DATABASE_", "THREADWISE_"))}
    env.update({
        "PYTHONPATH": str(ROOT), "PORT": str(port), "DATABASE_URL": f"sqlite:///{db}",
        "MODEL_BASE_URL": model.base_url, "MODEL_API_KEY": MODEL_API_KEY,
        "SLACK_BOT_TOKEN": slack.cfg.bot_token, "SLACK_SIGNING_SECRET": slack.signing_secret,
        "SLACK_API_URL": slack.api_url, "SLACK_FILE_HOSTS": slack.file_host,
        # A dead process's thread lease frees after 1 s (a live one renews it); the
        # periodic sweeper is off so the next message is what finalises the orphan.
        "THREADWISE_LEASE_TTL_S": "1", "THREADWISE_ORPHAN_SWEEP_S": "0",
    })
    return env


async def healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
            return resp.status == 200
    except aiohttp.ClientConnectionError:
        return False


@asynccontextmanager
async def threadwise_slack(
    env: dict[str, str], hygiene: LogHygiene, name: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`threadwise slack` as an operator runs it; its stderr goes to the hygiene scan."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "slack", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    url = f"http://127.0.0.1:{env['PORT']}"
    try:
        deadline = time.monotonic() + 30
        while not await healthy(url):
            assert proc.returncode is None, "threadwise slack exited during start-up"
            assert time.monotonic() < deadline, "threadwise slack never became healthy"
            await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        hygiene.check_output((await stderr).decode(errors="replace"), f"stderr of {name}")


async def deliver(slack: SlackServer, url: str, post: Post) -> None:
    for event in post.events:
        assert (await slack.deliver(url, event)).status == 200


def stored(db: Path) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT role, status, text FROM messages ORDER BY id").fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


async def test_kill_9_mid_reply_then_restart_finalises_the_orphan_and_the_thread_goes_on(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> None:
    slack = slack_server
    db = tmp_path / "threadwise.db"
    env = process_env(slack, model_server, db, free_port())
    url = f"http://127.0.0.1:{env['PORT']}"
    long_answer = " ".join(f"word{i}" for i in range(400))
    model_server.reply(long_answer, tokens_per_s=20)  # ~20 s: it will not get there

    async with threadwise_slack(env, log_hygiene, "the first threadwise slack") as first:
        post = slack.user_post(CHANNEL, "U0ALICE", f"{slack.mention} write me an essay")
        await deliver(slack, url, post)
        await slack.wait_until(  # part of the answer is on screen
            lambda: any(len(m.text) > 60 for m in slack.bot_replies(CHANNEL, post.ts)))
        await slack.wait_until(lambda: any(  # ...and was saved as progress
            role == "assistant" and len(text) > 60 for role, _, text in stored(db)))
        first.send_signal(signal.SIGKILL)
        await first.wait()
    [half] = slack.bot_replies(CHANNEL, post.ts)
    cut = half.text
    assert cut.startswith("word0 word1") and len(cut) < len(long_answer)
    assert stored(db)[1][1] == "streaming"

    async with threadwise_slack(env, log_hygiene, "the restarted threadwise slack"):
        follow = slack.user_post(CHANNEL, "U0ALICE", "are you back?", thread_ts=post.ts)
        await deliver(slack, url, follow)
        await slack.wait_until(lambda: len(slack.bot_replies(CHANNEL, post.ts)) == 2
                               and not slack.bot_replies(CHANNEL, post.ts)[1].streaming)
        await slack.wait_until(lambda: stored(db)[-1][1] == "complete")

    orphan, answer = slack.bot_replies(CHANNEL, post.ts)
    assert orphan.text.endswith(INTERRUPTED) and not orphan.streaming
    assert orphan.text.startswith(cut.strip()[:60])  # what was shown is kept
    assert answer.text.startswith("echo: ") and "are you back?" in answer.text
    rows = stored(db)
    assert [(role, status) for role, status, _ in rows] == [
        ("user", "complete"), ("assistant", "partial"),
        ("user", "complete"), ("assistant", "complete"),
    ]
    assert rows[0][2] == "write me an essay" and long_answer.startswith(rows[1][2])
    # The restarted process sent the model the first question and the partial answer.
    seen = str(model_server.requests[-1].body["messages"])
    assert "write me an essay" in seen and "word0 word1" in seen
    assert len(model_server.requests) == 2  # nothing was asked twice


async def killed_while_busy_then_restarted(
    slack: SlackServer, model: FakeModelServer, db: Path, hygiene: LogHygiene, text: str,
    busy: Callable[[], bool], files: list[dict[str, Any]] | None = None,
) -> Post:
    """Ask, kill -9 `threadwise slack` once busy() holds (before any word of the
    answer), restart it and wait until the orphan sweep has dealt with the question."""
    env = process_env(slack, model, db, free_port())
    env["THREADWISE_ORPHAN_SWEEP_S"] = "0.2"  # nobody writes in the thread again
    url = f"http://127.0.0.1:{env['PORT']}"
    async with threadwise_slack(env, hygiene, "the first threadwise slack") as first:
        post = slack.user_post(CHANNEL, "U0ALICE", f"{slack.mention} {text}", files=files)
        await deliver(slack, url, post)
        await slack.wait_until(busy)
        await slack.wait_until(lambda: slack.status(CHANNEL, post.ts) != "")  # waiting shown
        first.send_signal(signal.SIGKILL)
        await first.wait()
    assert slack.bot_replies(CHANNEL, post.ts) == []  # Slack got its ack: no redelivery

    async with threadwise_slack(env, hygiene, "the restarted threadwise slack"):
        await slack.wait_until(lambda: bool(slack.bot_replies(CHANNEL, post.ts)))
        await slack.wait_until(lambda: stored(db)[-1][1] != "streaming")
    [notice] = slack.bot_replies(CHANNEL, post.ts)
    assert notice.text == NOT_ANSWERED and not notice.streaming
    assert slack.status(CHANNEL, post.ts) == ""  # "is thinking…" is gone
    return post


async def test_kill_9_before_the_first_word_then_restart_asks_the_user_to_ask_again(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> None:
    db = tmp_path / "threadwise.db"
    model_server.reply("A slow, thoughtful answer.", ttft_s=30)
    await killed_while_busy_then_restarted(
        slack_server, model_server, db, log_hygiene, "a deep question",
        busy=lambda: len(model_server.requests) == 1,  # the model is thinking...
    )
    assert stored(db) == [("user", "complete", "a deep question"), ("assistant", "failed", "")]
    assert len(model_server.requests) == 1  # nothing was asked twice


async def test_kill_9_while_a_file_downloads_then_restart_asks_the_user_to_ask_again(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    log_hygiene: LogHygiene,
) -> None:
    db = tmp_path / "threadwise.db"
    scan = slack_server.host_file("scan.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
                                  "image/png", stall_s=60)  # a slow file host
    await killed_while_busy_then_restarted(
        slack_server, model_server, db, log_hygiene, "what is in this?", files=[scan],
        busy=lambda: bool(slack_server.files.requests),  # downloading...
    )
    # The question is in the history (without the file it never got), not lost.
    assert stored(db) == [("user", "complete", "what is in this?"), ("assistant", "failed", "")]
    assert model_server.requests == []
