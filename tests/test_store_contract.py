"""One contract suite for every store backend (SQLite file, real PostgreSQL server)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import pytest

from core.ports import HistoryStore, StaleLease
from core.store import PostgresStore, SQLiteStore, open_store
from core.types import Media, MediaRef, NewMessage, ThreadKey, ToolExchange, Usage
from tests.pg import PgServer, pg_server_fixture  # noqa: F401  (fixture, used via request)

AnyStore = SQLiteStore | PostgresStore

THREAD = ThreadKey("slack", "T1", "C1", "1700000000.000100")
OTHER_ROOT = ThreadKey("slack", "T1", "C1", "1700000000.000200")
OTHER_CHANNEL = ThreadKey("slack", "T1", "C2", "1700000000.000100")
OTHER_PLATFORM = ThreadKey("discord", "T1", "C1", "1700000000.000100")


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/threadwise.db"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = await server.fresh_url()
    try:
        yield url
    finally:
        await server.discard(url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[AnyStore]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


def said(text: str, key: ThreadKey = THREAD, **fields: object) -> NewMessage:
    role = fields.pop("role", "user")
    return NewMessage(key, role, "U1", "Ada", text, **fields)  # type: ignore[arg-type]


async def test_implements_the_port(store: AnyStore) -> None:
    assert isinstance(store, HistoryStore)


async def test_appended_messages_load_oldest_first_with_every_field(store: AnyStore) -> None:
    first = await store.append(said("hello", platform_id="1700000000.000100"))
    second = await store.append(
        NewMessage(THREAD, "assistant", "B1", "threadwise", "Hi Ada!", parent_id=first.id)
    )
    third = await store.append(said("how are you?", parent_id=second.id))

    loaded = await store.load_thread(THREAD)

    assert [m.text for m in loaded] == ["hello", "Hi Ada!", "how are you?"]
    assert loaded == [first, second, third]
    assert first.id < second.id < third.id
    assert loaded[1].role == "assistant" and loaded[1].author_name == "threadwise"
    assert loaded[0].platform_id == "1700000000.000100" and loaded[0].parent_id is None
    assert loaded[2].parent_id == second.id
    assert abs(loaded[0].created_at - time.time()) < 60


async def test_branches_keep_both_children_of_one_parent(store: AnyStore) -> None:
    root = await store.append(said("question"))
    left = await store.append(said("answer A", role="assistant", parent_id=root.id))
    right = await store.append(said("answer B", role="assistant", parent_id=root.id))

    loaded = {m.id: m for m in await store.load_thread(THREAD)}

    assert loaded[left.id].parent_id == root.id
    assert loaded[right.id].parent_id == root.id
    assert len(loaded) == 3


async def test_a_thread_loads_only_its_own_messages(store: AnyStore) -> None:
    await store.append(said("mine"))
    other_space = ThreadKey("slack", "T2", "C1", THREAD.root)
    for key in (OTHER_ROOT, OTHER_CHANNEL, OTHER_PLATFORM, other_space):
        await store.append(said(f"not mine: {key}", key))

    assert [m.text for m in await store.load_thread(THREAD)] == ["mine"]
    assert await store.load_thread(ThreadKey("slack", "T9", "C9", "9")) == []


async def test_unknown_parent_is_refused(store: AnyStore) -> None:
    with pytest.raises(LookupError):
        await store.append(said("orphan", parent_id=987654))
    assert await store.load_thread(THREAD) == []


async def test_find_and_locate_match_the_first_and_every_continuation_part(
    store: AnyStore,
) -> None:
    reply = await store.append(said("long answer", role="assistant", platform_id="p1"))
    await store.add_platform_id(reply.id, "p2")
    await store.add_platform_id(reply.id, "p3")
    await store.add_platform_id(reply.id, "p3")  # recording a part twice is harmless

    for part in ("p1", "p2", "p3"):
        found = await store.find(THREAD, part)
        assert found is not None and found.id == reply.id
        located = await store.locate("slack", "C1", part)
        assert located is not None and located.id == reply.id and located.key == THREAD

    assert await store.find(THREAD, "p4") is None
    assert await store.find(OTHER_ROOT, "p2") is None
    assert await store.locate("slack", "C2", "p2") is None
    assert await store.locate("discord", "C1", "p2") is None
    with pytest.raises(LookupError):
        await store.add_platform_id(424242, "p9")


async def test_reset_hides_earlier_messages_from_loads_and_find(store: AnyStore) -> None:
    old = await store.append(said("before", platform_id="m1"))
    await store.append(said("elsewhere", OTHER_ROOT))

    await store.reset_thread(THREAD)
    after = await store.append(said("after", platform_id="m2"))

    assert [m.text for m in await store.load_thread(THREAD)] == ["after"]
    assert await store.find(THREAD, "m1") is None
    found = await store.find(THREAD, "m2")
    assert found is not None and found.id == after.id
    # A reset forgets history, not identity: the message still maps to its thread.
    located = await store.locate("slack", "C1", "m1")
    assert located is not None and located.id == old.id
    assert [m.text for m in await store.load_thread(OTHER_ROOT)] == ["elsewhere"]

    await store.reset_thread(THREAD)
    assert await store.load_thread(THREAD) == []


async def test_update_changes_text_status_and_platform_id(store: AnyStore) -> None:
    reply = await store.append(said("", role="assistant", status="streaming"))

    await store.update(reply.id, text="partial answer")
    await store.update(reply.id, text="full answer", status="complete", platform_id="p7")

    [loaded] = await store.load_thread(THREAD)
    assert (loaded.text, loaded.status, loaded.platform_id) == ("full answer", "complete", "p7")
    found = await store.find(THREAD, "p7")
    assert found is not None and found.id == reply.id
    await store.update(reply.id)  # nothing to change is fine
    with pytest.raises(LookupError):
        await store.update(999999, text="ghost")


async def test_streaming_messages_lists_replies_left_mid_stream(store: AnyStore) -> None:
    await store.append(said("question"))
    stuck = await store.append(said("half an ans", role="assistant", status="streaming"))
    done = await store.append(said("done", role="assistant", status="streaming"))
    await store.update(done.id, status="complete")
    await store.append(said("other", OTHER_ROOT, role="assistant", status="streaming"))

    assert [m.id for m in await store.streaming_messages(THREAD)] == [stuck.id]


async def test_media_is_stored_once_by_hash_and_comes_back_byte_identical(
    store: AnyStore,
) -> None:
    data = bytes(range(256)) * 40 + b"\x00\xff"
    digest = hashlib.sha256(data).hexdigest()
    image = Media("image", "image/png", "screenshot.png", data, digest, 640, 480)

    await store.put_media(image)
    await store.put_media(Media("image", "image/png", "again.png", data, digest, 640, 480))

    assert await store.get_media(digest) == image
    rows = await store._fetch("SELECT COUNT(*) FROM media")
    assert rows[0][0] == 1
    assert await store.get_media("0" * 64) is None
    pdf = Media("pdf", "application/pdf", "spec.pdf", b"%PDF-1.7 ...", "ab" * 32)
    await store.put_media(pdf)
    assert await store.get_media("ab" * 32) == pdf


async def test_tool_exchanges_and_media_refs_round_trip_exactly(store: AnyStore) -> None:
    tools = (
        ToolExchange(
            "call_1", "lookup", '{"q": "naïve \\"quotes\\"", "n": 3}', "línea 1\nline 2 🎉\x00"
        ),
        ToolExchange("call_2", "clock", "{}", ""),
    )
    media = (MediaRef("a" * 64, "image", "photo 1.jpg"), MediaRef("b" * 64, "pdf", "spec ✓.pdf"))
    stored = await store.append(said("see attached", media=media, tools=tools))

    [loaded] = await store.load_thread(THREAD)

    assert loaded.tools == tools and loaded.media == media
    assert loaded == stored


async def test_usage_sums_by_channel_user_and_time(store: AnyStore) -> None:
    now = time.time()
    await store.record_usage(THREAD, "U1", "gpt-5.4-mini", Usage(100, 20, 50, 5), now - 7200)
    await store.record_usage(THREAD, "U1", "gpt-5.4-mini", Usage(10, 2, 1, 0), now - 60)
    await store.record_usage(THREAD, "U2", "gpt-5.4-mini", Usage(1, 1, 0, 0), now - 30)
    await store.record_usage(OTHER_CHANNEL, "U1", "gpt-5.4", Usage(1000, 200, 0, 7), now - 10)

    assert await store.usage_since(since=0) == Usage(1111, 223, 51, 12)
    assert await store.usage_since(since=now - 3600) == Usage(1011, 203, 1, 7)
    assert await store.usage_since(since=0, channel="C1") == Usage(111, 23, 51, 5)
    assert await store.usage_since(since=now - 3600, channel="C1", user_id="U1") == Usage(
        10, 2, 1, 0
    )
    assert await store.usage_since(since=0, user_id="U1") == Usage(1110, 222, 51, 12)
    assert await store.usage_since(since=now + 60) == Usage()


async def test_first_sighting_is_true_once_until_the_key_expires(store: AnyStore) -> None:
    assert await store.first_sighting("slack:C1:1700000000.000100", 60) is True
    assert await store.first_sighting("slack:C1:1700000000.000100", 60) is False
    assert await store.first_sighting("slack:C1:1700000000.000200", 60) is True

    assert await store.first_sighting("short-lived", 0.1) is True
    assert await store.first_sighting("short-lived", 0.1) is False
    await asyncio.sleep(0.3)
    assert await store.first_sighting("short-lived", 0.1) is True


async def test_first_sighting_has_one_winner_among_concurrent_callers(store: AnyStore) -> None:
    results = await asyncio.gather(*(store.first_sighting("event-1", 60) for _ in range(20)))
    assert sorted(results) == [False] * 19 + [True]


async def test_concurrent_appends_all_persist(store: AnyStore) -> None:
    await asyncio.gather(*(store.append(said(f"m{i}")) for i in range(25)))
    assert sorted(m.text for m in await store.load_thread(THREAD)) == sorted(
        f"m{i}" for i in range(25)
    )


async def test_lease_makes_a_second_task_wait_until_release(store: AnyStore) -> None:
    events: list[str] = []
    first_entered, release_first = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.lease("thread:a", 5):
            events.append("first in")
            first_entered.set()
            await release_first.wait()
            events.append("first out")

    async def second() -> None:
        async with store.lease("thread:a", 5):
            events.append("second in")

    holder = asyncio.create_task(first())
    async with asyncio.timeout(10):
        await first_entered.wait()
    waiter = asyncio.create_task(second())
    async with store.lease("thread:b", 5):  # another name is not blocked
        pass
    await asyncio.sleep(0.3)
    assert events == ["first in"]

    release_first.set()
    async with asyncio.timeout(10):
        await asyncio.gather(holder, waiter)
    assert events == ["first in", "first out", "second in"]


async def test_lease_excludes_another_store_on_the_same_database(store_url: str) -> None:
    one, two = await open_store(store_url), await open_store(store_url)
    try:
        async with one.lease("thread:a", 5) as held:
            assert not await two.try_acquire_lease("thread:a", "intruder", 5)
            waiter = asyncio.create_task(_enter_and_leave(two, "thread:a"))
            await asyncio.sleep(0.3)
            assert not waiter.done()
            assert not held.lost
        async with asyncio.timeout(10):
            await waiter
    finally:
        await one.close()
        await two.close()


async def _enter_and_leave(store: AnyStore, name: str) -> None:
    async with store.lease(name, 5):
        pass


async def test_expired_lease_is_taken_over_and_the_stale_holder_cannot_write(
    store: AnyStore,
) -> None:
    stale_cm = store.lease("thread:a", 0.2, auto_renew=False)  # a holder that hung
    stale = await stale_cm.__aenter__()
    fresh_cm = store.lease("thread:a", 30)
    async with asyncio.timeout(10):
        fresh = await fresh_cm.__aenter__()
    assert fresh.token != stale.token

    with pytest.raises(StaleLease):
        await store.append(said("late reply from the hung turn"), lease_token=stale.token)
    await store.append(said("reply from the new holder"), lease_token=fresh.token)
    await stale.renew()
    assert stale.lost and not fresh.lost

    await stale_cm.__aexit__(None, None, None)  # the stale exit must not free fresh's lease
    assert not await store.try_acquire_lease("thread:a", "intruder", 30)
    await fresh_cm.__aexit__(None, None, None)
    assert await store.try_acquire_lease("thread:a", "intruder", 30)
    assert [m.text for m in await store.load_thread(THREAD)] == ["reply from the new holder"]


async def test_a_stale_holder_cannot_change_the_reply_the_new_holder_finalised(
    store: AnyStore,
) -> None:
    stale_cm = store.lease("thread:a", 0.2, auto_renew=False)  # a holder that hung mid-reply
    stale = await stale_cm.__aenter__()
    reply = await store.append(said("half a rep", status="streaming"), lease_token=stale.token)
    await store.update(reply.id, text="half a reply", lease_token=stale.token)
    fresh_cm = store.lease("thread:a", 30)
    async with asyncio.timeout(10):
        fresh = await fresh_cm.__aenter__()
    await store.update(reply.id, status="partial", lease_token=fresh.token)  # marked cut

    with pytest.raises(StaleLease):
        await store.update(reply.id, text="half a reply, then all of it", status="complete",
                           lease_token=stale.token)
    [kept] = await store.load_thread(THREAD)
    assert (kept.text, kept.status) == ("half a reply", "partial")
    await stale_cm.__aexit__(None, None, None)
    await fresh_cm.__aexit__(None, None, None)


async def test_confirm_answers_from_the_term_and_asks_the_database_once_it_runs_low(
    store: AnyStore,
) -> None:
    async with store.lease("thread:a", 0.4, auto_renew=False) as lease:
        assert await lease.confirm()  # fresh: no need to ask
        await asyncio.sleep(0.5)  # stalled past the whole term; nobody took over
        assert await lease.confirm(), "an expired lease nobody took is renewed, not given up"
        assert not await store.try_acquire_lease("thread:a", "intruder", 30)
        await asyncio.sleep(0.5)
        assert await store.try_acquire_lease("thread:a", "intruder", 30)  # taken over
        assert not await lease.confirm() and lease.lost
        assert not await lease.confirm(), "a lost lease stays lost"


async def test_settings_are_kept_per_name_replaced_and_forgotten(store_url: str) -> None:
    store = await open_store(store_url)
    await store.put_setting("discord:model:1", "openai/gpt-5.4")
    await store.put_setting("discord:model:2", "openai/gpt-5.5")
    await store.put_setting("discord:model:1", "openai/gpt-5.2-chat")  # replaced
    await store.put_setting("discord:reset:1", "1234")
    await store.put_setting("discord:model:2", None)  # back to the default: forgotten
    await store.put_setting("discord:model:_%", "not a pattern")  # prefixes match literally
    await store.close()

    reopened = await open_store(store_url)  # as after a restart
    try:
        assert await reopened.settings("discord:model:") == {
            "discord:model:1": "openai/gpt-5.2-chat", "discord:model:_%": "not a pattern"}
        assert await reopened.settings("discord:model:_") == {
            "discord:model:_%": "not a pattern"}
        assert await reopened.settings("discord:reset:") == {"discord:reset:1": "1234"}
        assert await reopened.settings("nothing:") == {}
    finally:
        await reopened.close()


async def test_exactly_one_contender_takes_over_an_expired_lease(store_url: str) -> None:
    one, two = await open_store(store_url), await open_store(store_url)
    try:
        assert await one.try_acquire_lease("thread:a", "hung-holder", 0.05)
        await asyncio.sleep(0.2)
        attempts = [
            (one if n % 2 else two).try_acquire_lease("thread:a", f"contender-{n}", 30)
            for n in range(10)
        ]
        assert sorted(await asyncio.gather(*attempts)) == [False] * 9 + [True]
        assert not await one.renew_lease("thread:a", "hung-holder", 30)
    finally:
        await one.close()
        await two.close()


async def test_append_after_release_is_stale(store: AnyStore) -> None:
    async with store.lease("thread:a", 5) as lease:
        await store.append(said("inside"), lease_token=lease.token)
    with pytest.raises(StaleLease):
        await store.append(said("after release"), lease_token=lease.token)
    assert [m.text for m in await store.load_thread(THREAD)] == ["inside"]


async def test_lease_held_says_whether_a_live_lease_exists(store: AnyStore) -> None:
    assert not await store.lease_held("thread:a")
    async with store.lease("thread:a", 0.5, auto_renew=False):
        assert await store.lease_held("thread:a")
        assert not await store.lease_held("thread:b")
        await asyncio.sleep(0.7)
        assert not await store.lease_held("thread:a")  # expired: nobody is acting on it
    assert not await store.lease_held("thread:a")


async def test_renew_extends_the_lease(store: AnyStore) -> None:
    async with store.lease("thread:a", 1.0, auto_renew=False) as lease:
        await asyncio.sleep(0.6)
        await lease.renew()
        await asyncio.sleep(0.6)  # past the first expiry, within the renewed one
        assert not await store.try_acquire_lease("thread:a", "intruder", 5)
        assert not lease.lost


async def test_a_held_lease_renews_itself_while_in_use(store: AnyStore) -> None:
    async with store.lease("thread:a", 0.6) as lease:
        await asyncio.sleep(1.5)  # several TTLs: a long streamed reply
        assert not await store.try_acquire_lease("thread:a", "intruder", 5)
        assert not lease.lost
    assert await store.try_acquire_lease("thread:a", "next", 5)


async def test_release_with_the_wrong_token_does_not_release(store: AnyStore) -> None:
    async with store.lease("thread:a", 30) as lease:
        assert not await store.release_lease("thread:a", "not-" + lease.token)
        assert not await store.try_acquire_lease("thread:a", "intruder", 30)
    assert await store.try_acquire_lease("thread:a", "intruder", 30)


async def test_a_cancelled_holder_still_frees_the_lease(store: AnyStore) -> None:
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with store.lease("thread:a", 30):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        await _enter_and_leave(store, "thread:a")


async def test_update_records_tool_exchanges_on_a_reply(store: HistoryStore) -> None:
    key = ThreadKey("t", "s", "c", "tools")
    reply = await store.append(NewMessage(key, "assistant", "bot", "bot", "", status="streaming"))
    exchange = ToolExchange("call_9", "current_time", '{"timezone": null}', "12:00 UTC")
    await store.update(reply.id, text="It is noon.", status="complete", tools=(exchange,))
    (loaded,) = await store.load_thread(key)
    assert loaded.tools == (exchange,) and loaded.text == "It is noon."


async def test_update_adds_the_files_fetched_after_the_question_was_stored(
    store: HistoryStore,
) -> None:
    key = ThreadKey("t", "s", "c", "files")
    question = await store.append(NewMessage(key, "user", "u1", "Ada", "what is this?"))
    scan = (MediaRef("c" * 64, "image", "scan ✓.png"),)
    await store.update(question.id, media=scan)
    (loaded,) = await store.load_thread(key)
    assert loaded.media == scan and loaded.text == "what is this?"

async def test_orphan_candidates_are_old_streaming_replies_of_one_platform(
    store: AnyStore,
) -> None:
    question = await store.append(said("question"))
    stuck = await store.append(said("half", role="assistant", status="streaming",
                                    parent_id=question.id))
    elsewhere = await store.append(said("half too", OTHER_ROOT, role="assistant",
                                        status="streaming"))
    finished = await store.append(said("done", role="assistant", status="streaming"))
    await store.update(finished.id, status="complete")
    await store.append(said("a discord reply", OTHER_PLATFORM, role="assistant",
                            status="streaming"))

    assert await store.orphan_candidates("slack", 60) == []  # all younger than a minute
    await asyncio.sleep(0.05)
    found = await store.orphan_candidates("slack", 0.01)
    assert [m.id for m in found] == [stuck.id, elsewhere.id]
    assert found[1].key == OTHER_ROOT and found[0].text == "half"

    await store.update(stuck.id, status="partial")  # finalised: no longer a candidate
    assert [m.id for m in await store.orphan_candidates("slack", 0.01)] == [elsewhere.id]
    assert [m.key for m in await store.orphan_candidates("discord", 0.01)] == [OTHER_PLATFORM]


async def test_a_database_from_before_the_orphan_index_is_upgraded_in_place(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.store import postgres as pg_module
    from core.store import sqlite as sqlite_module

    module = sqlite_module if store_url.startswith("sqlite") else pg_module
    current = module.MIGRATIONS
    monkeypatch.setattr(module, "MIGRATIONS", current[:1])  # a threadwise of schema v1
    old = await open_store(store_url)
    await old.append(said("left streaming by v1", role="assistant", status="streaming"))
    await old.close()

    monkeypatch.setattr(module, "MIGRATIONS", current)
    upgraded = await open_store(store_url)
    try:
        await asyncio.sleep(0.05)
        [orphan] = await upgraded.orphan_candidates("slack", 0.01)
        assert orphan.text == "left streaming by v1"
        if isinstance(upgraded, SQLiteStore):
            rows = await upgraded._fetch("PRAGMA user_version")
            index = await upgraded._fetch(
                "SELECT 1 FROM sqlite_master WHERE name = 'messages_streaming'")
        else:
            rows = await upgraded._fetch("SELECT MAX(version) FROM schema_version")
            index = await upgraded._fetch(
                "SELECT 1 FROM pg_indexes WHERE indexname = 'messages_streaming' "
                "AND schemaname = current_schema()")
        assert rows[0][0] == len(current) >= 2
        assert len(index) == 1, "the sweeper's partial index was created"
    finally:
        await upgraded.close()
