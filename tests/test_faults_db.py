"""Database faults through the real Slack bot: a SQLite file locked by another process,
and a database that cannot be written.

The person always gets one plain message in the thread, what was already stored stays,
and once the database is usable again the same thread carries on.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.orphans import INTERRUPTED
from core.store import SQLiteStore
from tests.fakes import known_secrets
from tests.fakes.fault_harness import SlackRig, slack_rig
from tests.fakes.log_capture import LogHygiene
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_server import SlackServer
from tests.test_store_sqlite import without_root_powers

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """Another process is in the middle of a write transaction and does not let go."""
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


async def first_turn(rig: SlackRig, model: FakeModelServer) -> str:
    model.reply("Noted: the launch is on Friday.")
    post = await rig.ask("remember that the launch is on Friday")
    await rig.answered(post)
    await rig.bot.idle()  # saved, too
    return post.ts


async def test_a_locked_database_gets_a_plain_message_and_the_thread_carries_on(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with slack_rig(slack_server, model_server, tmp_path, busy_timeout_ms=200) as rig:
        thread = await first_turn(rig, model_server)
        with write_lock_held(tmp_path / "threadwise.db"):
            blocked = await rig.ask("when is the launch?", thread_ts=thread)
            await slack_server.wait_until(lambda: len(rig.replies(blocked)) == 2)
            await rig.bot.idle()
        replies = rig.replies(blocked)
        assert replies[-1].text.startswith(
            "⚠️ Sorry, I couldn't answer: the database is busy (another process is writing "
            "to it); please try again in a moment")
        assert "try again" in replies[-1].text
        assert str(tmp_path) not in replies[-1].text  # no server paths in a channel
        asked = len(model_server.requests)
        assert asked == 1  # the model was never called for the blocked message

        model_server.reply("Friday.")
        again = await rig.ask("when is the launch, again?", thread_ts=thread)
        await slack_server.wait_until(lambda: len(rig.replies(again)) == 3)
        await rig.answered(again)
        assert rig.replies(again)[-1].text == "Friday."
        seen = str(model_server.requests[-1].body["messages"])
        assert "the launch is on Friday" in seen  # history from before the fault is intact
        history = await rig.history(again)
    assert [(m.role, m.text) for m in history] == [
        ("user", "remember that the launch is on Friday"),
        ("assistant", "Noted: the launch is on Friday."),
        ("user", "when is the launch, again?"),
        ("assistant", "Friday."),
    ]


async def test_a_short_lock_at_the_end_of_a_reply_is_waited_out(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    answer = "A long answer that streams in for a while. " * 6
    model_server.reply(answer, tokens_per_s=40)
    async with slack_rig(slack_server, model_server, tmp_path, busy_timeout_ms=200) as rig:
        post = await rig.ask("explain slowly")
        await slack_server.wait_until(lambda: bool(rig.replies(post)))
        with write_lock_held(tmp_path / "threadwise.db"):
            await rig.answered(post)
            await asyncio.sleep(0.4)  # the first save gives up after 200 ms; the retry waits
        [reply] = rig.replies(post)
        assert reply.text.strip() == answer.strip()
        history = await rig.history(post)
    assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                     ("assistant", "complete")]
    assert history[1].text == answer


async def test_a_long_lock_at_the_end_of_a_reply_is_noted_in_it_not_in_a_second_reply(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    answer = "A long answer that streams in for a while. " * 6
    model_server.reply(answer, tokens_per_s=40)
    async with slack_rig(slack_server, model_server, tmp_path, busy_timeout_ms=200) as rig:
        post = await rig.ask("explain slowly")
        await slack_server.wait_until(lambda: bool(rig.replies(post)))
        with write_lock_held(tmp_path / "threadwise.db"):
            await rig.bot.idle()  # every save attempt ran into the lock
        [reply] = rig.replies(post)  # the answer, and no separate failure message
        assert reply.text.startswith(answer.strip())
        assert reply.text.endswith(
            "\n\n⚠️ _I couldn't save this reply, so I may not remember it later: the database "
            "is busy (another process is writing to it); please try again in a moment_")
        history = await rig.history(post)
        assert [m.role for m in history] == ["user", "assistant"]
        assert answer.startswith(history[1].text)  # what was saved before the lock

        # Once the database is back, the next message finds the reply's row still
        # 'streaming' (its save was refused). This process knows how it ended: it saves
        # it whole rather than marking it "interrupted (the bot restarted)".
        model_server.reply("You're welcome.")
        thanks = await rig.ask("thanks!", thread_ts=post.ts)
        await slack_server.wait_until(lambda: len(rig.replies(thanks)) == 2)
        await rig.answered(thanks)
        assert rig.replies(thanks)[0].text == reply.text  # left as the user saw it
        assert INTERRUPTED not in str([m.text for m in rig.replies(thanks)])
        history = await rig.history(thanks)
    assert [(m.role, m.status) for m in history] == [
        ("user", "complete"), ("assistant", "complete"), ("user", "complete"),
        ("assistant", "complete")]
    assert history[1].text == answer  # the whole answer, saved late
    assert answer.strip() in str(model_server.requests[-1].body["messages"])


async def test_a_database_that_turned_read_only_is_named_as_such(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    async with slack_rig(slack_server, model_server, tmp_path) as rig:
        thread = await first_turn(rig, model_server)
        store = rig.core.store
        assert isinstance(store, SQLiteStore)
        # SQLite's own read-only mode on the bot's live connection: every write now fails
        # with SQLITE_READONLY, as on a file or disk remounted read-only.
        await store._db.execute("PRAGMA query_only = ON")
        post = await rig.ask("is this saved?", thread_ts=thread)
        await slack_server.wait_until(lambda: len(rig.replies(post)) == 2)
        await rig.bot.idle()
        assert rig.replies(post)[-1].text.startswith(
            "⚠️ Sorry, I couldn't answer: the database is read-only")
        await store._db.execute("PRAGMA query_only = OFF")
        history = await rig.history(post)
    assert [m.text for m in history] == ["remember that the launch is on Friday",
                                         "Noted: the launch is on Friday."]


async def test_threadwise_slack_on_a_read_only_file_exits_2_with_one_line(
    tmp_path: Path, log_hygiene: LogHygiene
) -> None:
    db = tmp_path / "threadwise.db"
    sqlite3.connect(db).close()
    db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{db}", "SLACK_BOT_TOKEN": known_secrets.SLACK_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": known_secrets.SLACK_SIGNING_SECRET,
        "MODEL_BASE_URL": "http://127.0.0.1:9/v1/", "PORT": "0",
    }
    child = await asyncio.create_subprocess_exec(
        *without_root_powers([sys.executable, "-m", "bots.cli", "slack"]), env=env,
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await child.communicate()
    log_hygiene.check_output(err.decode(), "stderr of threadwise slack")
    assert child.returncode == 2, err.decode()
    assert err.decode() == (
        f"threadwise: the SQLite database at {db} is read-only: threadwise needs write "
        "access to the file and to its directory\n"
    )
