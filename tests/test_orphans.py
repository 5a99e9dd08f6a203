"""Replies a dead process left 'streaming' are finalised with a visible marker: by the
next turn in their thread, or by the sweeper when the thread stays quiet. A question whose
reply died before its first word is told to ask again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bots.compose import Core, open_core
from core.orphans import INTERRUPTED, NOT_ANSWERED, OrphanSweeper
from core.service import thread_lease
from core.store import SQLiteStore
from core.store.errors import StoreUnavailable
from core.types import FileRef, NewMessage, StoredMessage, ThreadKey
from tests.fakes.bad_files import jpeg
from tests.fakes.chat_port import Conversation, MemoryPort, settings_for
from tests.fakes.model_server import FakeModelServer

TTL_S = 0.3  # a short lease TTL, so a dead holder's lease expires within the test


@pytest.fixture
async def core(model_server: FakeModelServer, tmp_path: Path) -> AsyncIterator[Core]:
    settings = settings_for(model_server, tmp_path / "t.db", THREADWISE_LEASE_TTL_S=TTL_S,
                            THREADWISE_ORPHAN_SWEEP_S=0.05)
    async with open_core(settings) as opened:
        yield opened


async def died_mid_reply(core: Core, port: MemoryPort, key: ThreadKey, shown: str) -> int:
    """What a process killed mid-stream leaves: a question, a reply row still 'streaming'
    whose text and platform message were saved as it streamed, and its lease row."""
    question = await core.store.append(NewMessage(key, "user", "u1", "Ada", "explain leases"))
    reply = await core.store.append(NewMessage(
        key, "assistant", "threadwise", "threadwise", "", parent_id=question.id,
        status="streaming",
    ))
    platform_id = f"dead-{reply.id}"
    port.messages[platform_id] = shown
    await core.store.update(reply.id, text=shown, platform_id=platform_id)
    assert isinstance(core.store, SQLiteStore)  # the lease row, as its dead holder left it
    assert await core.store.try_acquire_lease(thread_lease(key), f"dead-{key.root}", TTL_S)
    return reply.id


async def status_of(core: Core, key: ThreadKey, message_id: int) -> str:
    return next(m.status for m in await core.store.load_thread(key) if m.id == message_id)


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached within the timeout"
        await asyncio.sleep(0.01)


async def test_the_next_turn_marks_the_orphan_and_then_answers(
    core: Core, model_server: FakeModelServer
) -> None:
    talk = Conversation(core, MemoryPort(), model_server)
    orphan = await died_mid_reply(core, talk.port, talk.key, "Leases are rows that")

    model_server.reply("Yes, still here.")
    shown = await talk.say("are you still there?")  # waits out the dead holder's lease

    assert talk.port.messages[f"dead-{orphan}"] == f"Leases are rows that\n\n{INTERRUPTED}"
    assert await status_of(core, talk.key, orphan) == "partial"
    assert shown == "Yes, still here."
    # The model saw the interrupted half-answer as history, not as a finished one.
    assert "Leases are rows that" in str(model_server.requests[-1].body)


async def test_the_sweeper_marks_an_orphan_in_a_quiet_thread(core: Core) -> None:
    port = MemoryPort()
    key = ThreadKey("memory", "team", "general", "quiet")
    orphan = await died_mid_reply(core, port, key, "Half an answ")
    await asyncio.sleep(TTL_S + 0.05)  # the dead holder's lease has expired

    assert await core.service.orphans.sweep(port, platform="memory") == 1

    assert port.messages[f"dead-{orphan}"] == f"Half an answ\n\n{INTERRUPTED}"
    assert await status_of(core, key, orphan) == "partial"
    assert await core.service.orphans.sweep(port, platform="memory") == 0  # once only


async def test_the_sweeper_leaves_a_reply_whose_turn_is_alive(core: Core) -> None:
    port = MemoryPort()
    key = ThreadKey("memory", "team", "general", "busy")
    reply = await died_mid_reply(core, port, key, "Still typ")
    await asyncio.sleep(TTL_S + 0.05)
    async with core.store.lease(thread_lease(key), 30):  # a live turn holds the thread
        assert await core.service.orphans.sweep(port, platform="memory") == 0
        assert port.messages[f"dead-{reply}"] == "Still typ"
        assert await status_of(core, key, reply) == "streaming"


async def test_the_sweeper_task_only_touches_threads_it_owns(core: Core) -> None:
    port = MemoryPort()
    mine = ThreadKey("memory", "team", "general", "mine")
    theirs = ThreadKey("memory", "other-team", "general", "theirs")
    my_orphan = await died_mid_reply(core, port, mine, "Mine")
    their_orphan = await died_mid_reply(core, port, theirs, "Theirs")

    sweeper = asyncio.create_task(core.service.run_orphan_sweeper(
        port, platform="memory", owns=lambda key: key.space == "team"
    ))
    try:
        for _ in range(500):  # the first pass runs at once, then every 0.05 s
            if await status_of(core, mine, my_orphan) == "partial":
                break
            await asyncio.sleep(0.02)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)

    assert port.messages[f"dead-{my_orphan}"].endswith(INTERRUPTED)
    assert port.messages[f"dead-{their_orphan}"] == "Theirs"
    assert await status_of(core, theirs, their_orphan) == "streaming"


class StuckClosingPort(MemoryPort):
    """A platform whose closing write never answers (say, a hung chat.stopStream)."""

    closing = False

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        self.closing = True
        await asyncio.Event().wait()


async def test_a_reply_stuck_closing_at_shutdown_keeps_all_it_showed_after_the_restart(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = settings_for(model_server, tmp_path / "t.db")
    port = StuckClosingPort()
    answer = " ".join(f"word{i}" for i in range(60))
    model_server.reply(answer, tokens_per_s=100)
    async with open_core(settings) as first:
        turn = asyncio.create_task(Conversation(first, port, model_server).say("a list"))
        await until(lambda: port.closing)  # the whole answer came; the last write hangs
        turn.cancel()  # when a deploy stops the process
        await asyncio.gather(turn, return_exceptions=True)
    [(reply, shown)] = port.messages.items()
    assert len(shown) > 100  # edits after the first post were on screen

    async with open_core(settings) as restarted:
        talk = Conversation(restarted, MemoryPort(messages=port.messages), model_server)
        model_server.reply("Back again.")
        assert await talk.say("are you back?", message_id="u2") == "Back again."

    assert port.messages[reply] == f"{answer}\n\n{INTERRUPTED}"


async def test_a_question_whose_reply_died_before_its_first_word_is_told_to_ask_again(
    core: Core,
) -> None:
    port = MemoryPort()
    key = ThreadKey("memory", "team", "general", "silent")
    question = await core.store.append(NewMessage(
        key, "user", "u1", "Ada", "hello?", platform_id="ada-1"))
    reply = await core.store.append(NewMessage(
        key, "assistant", "threadwise", "threadwise", "", parent_id=question.id,
        status="streaming",
    ))
    await port.set_status(key, "is thinking…")  # what the dead turn had shown
    await asyncio.sleep(TTL_S + 0.05)
    # Two processes sweep at once (say, both restarted by the same deploy).
    other = OrphanSweeper(core.store, lease_name=thread_lease, lease_ttl_s=TTL_S, every_s=1)

    swept = await asyncio.gather(core.service.orphans.sweep(port, platform="memory"),
                                 other.sweep(port, platform="memory"))

    assert sorted(swept) == [0, 1]
    [notice] = [w for w in port.writes if w.kind == "post"]  # once, under the question
    assert (notice.text, notice.reply_to) == (NOT_ANSWERED, "ada-1")
    assert [w.text for w in port.writes if w.kind == "status"] == ["is thinking…", ""]
    assert await status_of(core, key, reply.id) == "failed"
    assert await core.service.orphans.sweep(port, platform="memory") == 0
    assert len(port.messages) == 1


async def test_a_question_cut_off_by_a_shutdown_before_any_answer_gets_a_notice(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = settings_for(model_server, tmp_path / "t.db", THREADWISE_LEASE_TTL_S=TTL_S)
    port = MemoryPort()
    model_server.reply("A slow, thoughtful answer.", ttft_s=5)
    async with open_core(settings) as first:
        turn = asyncio.create_task(Conversation(first, port, model_server).say("deep question"))
        await until(lambda: len(model_server.requests) == 1)  # the model is thinking...
        turn.cancel()  # ...when a deploy stops the process
        await asyncio.gather(turn, return_exceptions=True)
    assert port.messages == {}

    async with open_core(settings) as restarted:
        await asyncio.sleep(TTL_S + 0.05)  # the sweeper waits one lease TTL for candidates
        assert await restarted.service.orphans.sweep(port, platform="memory") == 1

    [notice] = [w for w in port.writes if w.kind == "post"]
    assert (notice.text, notice.reply_to) == (NOT_ANSWERED, "u1")  # the user's message


async def test_a_question_cut_off_while_its_files_download_is_kept_and_told_to_ask_again(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = settings_for(model_server, tmp_path / "t.db", THREADWISE_LEASE_TTL_S=TTL_S)
    port = MemoryPort(fetch_delay_s=60)  # a slow file host
    async with open_core(settings) as first:
        talk = Conversation(first, port, model_server)
        turn = asyncio.create_task(talk.say("what is in this?", files={"scan.png": b"x" * 10}))
        await asyncio.wait_for(port.fetching.wait(), 10)  # downloading...
        turn.cancel()  # ...when a deploy stops the process
        await asyncio.gather(turn, return_exceptions=True)
        history = await first.store.load_thread(talk.key)

    async with open_core(settings) as restarted:
        await asyncio.sleep(TTL_S + 0.05)  # the sweeper waits one lease TTL for candidates
        assert await restarted.service.orphans.sweep(port, platform="memory") == 1
    # The question is in the history (without the file it never got), not lost.
    assert [(m.role, m.text, m.media) for m in history] == [
        ("user", "what is in this?", ()), ("assistant", "", ())]
    [notice] = [w for w in port.writes if w.kind == "post"]
    assert (notice.text, notice.reply_to) == (NOT_ANSWERED, "u1")
    assert model_server.requests == []


async def test_cancels_just_as_the_question_is_stored_still_leave_its_reply_row(
    model_server: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(model_server, tmp_path / "t.db", THREADWISE_LEASE_TTL_S=TTL_S)
    port = MemoryPort()
    async with open_core(settings) as first:
        talk = Conversation(first, port, model_server)
        append = first.store.append
        turn: asyncio.Task[object] | None = None

        async def cancelled_meanwhile(message: NewMessage, **kw: Any) -> StoredMessage:
            assert turn is not None
            if message.role == "assistant":
                await asyncio.sleep(0.02)  # the turn is waiting for this row...
                turn.cancel()  # ...when a second SIGTERM comes
                await asyncio.sleep(0.05)
            row = await append(message, **kw)
            if message.role == "user":
                turn.cancel()  # SIGTERM, just as the question row lands
            return row

        monkeypatch.setattr(first.store, "append", cancelled_meanwhile)
        turn = asyncio.create_task(talk.say("what is in this?", files={"scan.png": b"x" * 10}))
        await asyncio.gather(turn, return_exceptions=True)
        assert turn.cancelled()
        history = await first.store.load_thread(talk.key)

    async with open_core(settings) as restarted:
        await asyncio.sleep(TTL_S + 0.05)
        assert await restarted.service.orphans.sweep(port, platform="memory") == 1
    assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                     ("assistant", "streaming")]
    assert [w.text for w in port.writes if w.kind == "post"] == [NOT_ANSWERED]
    assert model_server.requests == []


async def test_a_reply_cut_short_by_a_shutdown_keeps_all_it_showed_after_the_restart(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = settings_for(model_server, tmp_path / "t.db")
    port = MemoryPort()
    model_server.reply(" ".join(f"word{i}" for i in range(400)), tokens_per_s=100)
    async with open_core(settings) as first:
        turn = asyncio.create_task(Conversation(first, port, model_server).say("an essay"))
        # Well within the few seconds between progress saves, the reply is on screen...
        await until(lambda: any(len(text) > 300 for text in port.messages.values()))
        turn.cancel()  # ...when a deploy stops the process (SIGTERM, the grace ran out)
        await asyncio.gather(turn, return_exceptions=True)
    [(reply, shown)] = port.messages.items()

    async with open_core(settings) as restarted:
        talk = Conversation(restarted, port, model_server)
        model_server.reply("Back again.")
        assert await talk.say("are you back?", message_id="u2") == "Back again."

    assert port.messages[reply].startswith(shown.rstrip())  # nothing the user read is lost
    assert port.messages[reply].endswith(INTERRUPTED)


class OutageAfterDownload(MemoryPort):
    """The database goes away just as a download ends (e.g. a PostgreSQL failover)."""

    db_down = False

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        data = await super().fetch_file(ref, max_bytes=max_bytes)
        self.db_down = True
        return data


async def test_a_database_outage_while_reading_files_is_not_later_called_a_restart(
    core: Core, model_server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = OutageAfterDownload()
    store = core.store
    for name in ("put_media", "update"):
        working = getattr(store, name)

        async def while_down(*args: Any, _working: Any = working, **kw: Any) -> Any:
            if port.db_down:
                raise StoreUnavailable("could not connect to the database")
            return await _working(*args, **kw)

        monkeypatch.setattr(store, name, while_down)
    talk = Conversation(core, port, model_server)
    failed = await talk.say("what is this?", files={"photo.jpg": jpeg(64, 64)})
    assert failed.startswith("⚠️ Sorry, I couldn't answer: the bot's database is unavailable")
    port.db_down = False  # back a moment later

    await asyncio.sleep(TTL_S + 0.05)
    await core.service.orphans.sweep(port, platform="memory")  # no restart happened
    history = await store.load_thread(talk.key)
    assert [w.text for w in port.writes if w.kind == "post"] == [failed]  # nothing more
    assert [(m.role, m.status) for m in history] == [("user", "complete"),
                                                     ("assistant", "failed")]


async def test_a_turn_taken_over_while_reading_files_leaves_the_telling_to_the_new_holder(
    model_server: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(model_server, tmp_path / "t.db", THREADWISE_LEASE_TTL_S=TTL_S)
    port = MemoryPort(fetch_delay_s=1.5)  # a slow file host
    async with open_core(settings) as a, open_core(settings) as b:
        first = asyncio.create_task(Conversation(a, port, model_server).say(
            "what is in this?", files={"photo.jpg": jpeg(64, 64)}))
        await asyncio.wait_for(port.fetching.wait(), 10)

        async def cut_off(*args: object, **kw: object) -> bool:
            raise StoreUnavailable("could not connect to the database")

        monkeypatch.setattr(a.store, "renew_lease", cut_off)  # A cannot renew: it stalls
        await asyncio.sleep(TTL_S + 0.1)
        model_server.reply("Hello!")
        # Another process takes the thread over for a follow-up, and tells the user.
        second = await Conversation(b, port, model_server).say("hello?", message_id="u2")
        await first

    assert second.endswith("Hello!")
    # B's notice is the only one: A, waking with the file, posts nothing.
    assert [w.text for w in port.writes if w.kind == "post"] == [NOT_ANSWERED, "Hello!"]
    assert len(model_server.requests) == 1  # A never asked the model
