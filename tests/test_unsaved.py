"""Replies this process ended on screen but the database refused to save: each is saved
whole later, by the next turn in its thread or by the orphan sweep, instead of being
taken for a dead process's reply ("interrupted (the bot restarted)")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots.compose import Core, open_core
from core.orphans import INTERRUPTED, finalise_orphans
from core.reply_record import FinalState
from core.store import SQLiteStore
from core.store.errors import StoreUnavailable
from core.types import Inbound, NewMessage, ThreadKey
from core.unsaved import UnsavedReplies
from tests.fakes.chat_port import MemoryPort, settings_for
from tests.fakes.model_server import FakeModelServer

TTL_S = 0.3
KEY = ThreadKey("memory", "team", "general", "t1")


@pytest.fixture
async def core(model_server: FakeModelServer, tmp_path: Path) -> AsyncIterator[Core]:
    settings = settings_for(model_server, tmp_path / "t.db", THREADWISE_LEASE_TTL_S=TTL_S)
    async with open_core(settings) as opened:
        yield opened


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(str(tmp_path / "t.db"))
    try:
        yield opened
    finally:
        await opened.close()


async def streaming_reply(store: SQLiteStore) -> int:
    """A reply row as a refused final save leaves it: still 'streaming', its text as of
    the last progress save."""
    question = await store.append(NewMessage(KEY, "user", "u1", "Ada", "explain"))
    reply = await store.append(NewMessage(KEY, "assistant", "threadwise", "threadwise", "",
                                          parent_id=question.id, status="streaming"))
    await store.update(reply.id, text="Part one so f", platform_id="bot-1")
    return reply.id


@pytest.mark.parametrize("tailored", [False, True], ids=["base", "channel-override"])
async def test_a_refused_final_save_is_saved_by_the_sweep_not_called_a_restart(
    core: Core, model_server: FakeModelServer, monkeypatch: pytest.MonkeyPatch, tailored: bool
) -> None:
    # A channel with its own prompt (THREADWISE_CONFIG, Discord /model) is answered by a
    # service of its own; the sweep runs on the base one.
    service = (core.services.get(system_prompt="Answer in French.") if tailored
               else core.service)
    port = MemoryPort()
    working = core.store.update
    down = True

    async def final_save_refused(*args: Any, **kw: Any) -> None:
        if down and kw.get("status") == "complete":
            raise StoreUnavailable("could not connect to the database")
        await working(*args, **kw)

    monkeypatch.setattr(core.store, "update", final_save_refused)
    model_server.reply("The whole answer.")
    await service.handle(Inbound(key=KEY, message_id="u1", author_id="alice",
                                 author_name="Alice", text="explain"), port)
    down = False
    await asyncio.sleep(TTL_S + 0.05)
    await core.service.orphans.sweep(port, platform="memory")

    assert INTERRUPTED not in str(port.messages), port.messages
    [shown] = port.messages.values()
    assert shown.startswith("The whole answer.\n\n⚠️ _I couldn't save this reply")
    history = await core.store.load_thread(KEY)
    assert [(m.role, m.status, m.text) for m in history] == [
        ("user", "complete", "explain"), ("assistant", "complete", "The whole answer.")]


async def test_a_blip_while_saving_a_split_reply_keeps_every_part_for_the_next_try(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await streaming_reply(store)
    unsaved = UnsavedReplies()
    unsaved.keep(reply, FinalState("complete", "Part one... part two.", ("bot-1", "bot-2")))
    working = store.add_platform_id
    calls = 0

    async def blip(*args: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("database is busy")
        await working(*args, **kw)

    monkeypatch.setattr(store, "add_platform_id", blip)
    await finalise_orphans(store, KEY, MemoryPort(), unsaved)  # the blip
    await finalise_orphans(store, KEY, MemoryPort(), unsaved)  # the database is back
    # A reply to the second message still finds the reply (Discord reply chains).
    found = await store.locate("memory", "general", "bot-2")
    assert found is not None and found.id == reply
    assert found.status == "complete" and reply not in unsaved


async def test_a_reply_forgotten_while_it_is_being_saved_does_not_fail_the_turn(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = await streaming_reply(store)
    unsaved = UnsavedReplies(limit=1)  # a long outage fills the memory
    unsaved.keep(reply, FinalState("complete", "whole answer", ("bot-1",)))
    working = store.update
    writing = asyncio.Event()

    async def slow(*args: Any, **kw: Any) -> None:
        writing.set()
        await asyncio.sleep(0.1)
        await working(*args, **kw)

    monkeypatch.setattr(store, "update", slow)
    settling = asyncio.create_task(finalise_orphans(store, KEY, MemoryPort(), unsaved))
    await writing.wait()
    unsaved.keep(reply + 1000, FinalState("failed"))  # another refused save evicts it
    assert await settling == 1
    [row] = [m for m in await store.load_thread(KEY) if m.role == "assistant"]
    assert (row.status, row.text) == ("complete", "whole answer")
