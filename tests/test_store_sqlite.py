"""SQLite-only behaviour: pragmas, migrations, clear errors, and leases across processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

import core.store.sqlite as sqlite_module
from core.store import SchemaTooNew, SQLiteStore, StoreUnavailable, open_store
from core.store.sqlite_schema import MIGRATIONS
from core.types import NewMessage, ThreadKey

THREAD = ThreadKey("slack", "T1", "C1", "1700000000.000100")


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path gives the four-slash form


async def open_sqlite(url: str, **options: int) -> SQLiteStore:
    store = await open_store(url, **options)
    assert isinstance(store, SQLiteStore)
    return store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "threadwise.db"


def said(text: str, key: ThreadKey = THREAD) -> NewMessage:
    return NewMessage(key, "user", "U1", "Ada", text)


async def pragma(store: SQLiteStore, name: str) -> object:
    rows = await store._fetch(f"PRAGMA {name}")
    return rows[0][0]


async def test_connection_runs_wal_normal_sync_busy_timeout_and_foreign_keys(
    db_path: Path,
) -> None:
    store = await open_sqlite(url_for(db_path), busy_timeout_ms=1234)
    try:
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == 1  # NORMAL
        assert await pragma(store, "busy_timeout") == 1234
        assert await pragma(store, "foreign_keys") == 1
    finally:
        await store.close()
    with sqlite3.connect(db_path) as other:  # WAL is a property of the file itself
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    default = await open_sqlite(url_for(db_path))
    try:
        assert await pragma(default, "busy_timeout") == 5000
    finally:
        await default.close()


async def test_migrations_are_versioned_and_reopening_is_harmless(db_path: Path) -> None:
    store = await open_sqlite(url_for(db_path))
    await store.append(said("kept"))
    assert await pragma(store, "user_version") == len(MIGRATIONS)
    await store.close()

    for _ in range(2):
        again = await open_sqlite(url_for(db_path))
        assert await pragma(again, "user_version") == len(MIGRATIONS)
        assert [m.text for m in await again.load_thread(THREAD)] == ["kept"]
        await again.close()


async def test_a_new_migration_step_is_applied_once_on_top_of_existing_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_sqlite(url_for(db_path))
    await store.append(said("from v1"))
    await store.close()

    upgraded = (*MIGRATIONS, ("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",))
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", upgraded)
    for _ in range(2):  # the second open must not try to create the table again
        store = await open_sqlite(url_for(db_path))
        assert await pragma(store, "user_version") == len(upgraded)
        assert [m.text for m in await store.load_thread(THREAD)] == ["from v1"]
        await store.close()


async def test_stores_opening_a_fresh_file_together_migrate_once(db_path: Path) -> None:
    stores = await asyncio.gather(*(open_sqlite(url_for(db_path)) for _ in range(4)))
    try:
        await stores[0].append(said("one"))
        for store in stores:
            assert [m.text for m in await store.load_thread(THREAD)] == ["one"]
    finally:
        for store in stores:
            await store.close()


async def test_a_database_from_a_newer_threadwise_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(SchemaTooNew, match="upgrade threadwise"):
        await open_store(url_for(db_path))


async def test_load_thread_reads_through_the_thread_index(db_path: Path) -> None:
    store = await open_sqlite(url_for(db_path))
    statements: list[str] = []
    try:
        for n in range(5):
            await store.append(said(f"m{n}", ThreadKey("slack", "T1", "C1", str(n))))
        await store._db.set_trace_callback(statements.append)
        await store.load_thread(THREAD)
        [query] = [s for s in statements if "FROM messages" in s]
        plan = " | ".join(row[3] for row in await store._fetch(f"EXPLAIN QUERY PLAN {query}"))
    finally:
        await store.close()
    assert "messages_by_thread" in plan
    assert "SCAN messages" not in plan  # no full-table scan


async def test_in_memory_and_relative_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = await open_sqlite("sqlite:///:memory:")
    await memory.append(said("ephemeral"))
    assert [m.text for m in await memory.load_thread(THREAD)] == ["ephemeral"]
    await memory.close()

    monkeypatch.chdir(tmp_path)
    relative = await open_sqlite("sqlite:///relative.db")
    await relative.close()
    assert (tmp_path / "relative.db").is_file()


async def test_a_missing_directory_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(url_for(missing / "threadwise.db"))
    assert caught.value.reason == (
        f"cannot open SQLite database at {missing}/threadwise.db: "
        f"directory {missing} does not exist"
    )


async def test_unsupported_urls_are_refused_without_leaking_passwords() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await open_store("mysql://bot:hunter2@db.internal/threadwise")
    assert "hunter2" not in str(caught.value)
    assert "mysql://bot:***@db.internal/threadwise" in str(caught.value)
    with pytest.raises(StoreUnavailable, match="options are not supported"):
        await open_store("sqlite:///threadwise.db?mode=ro")


async def test_a_write_lock_held_past_busy_timeout_gives_a_clear_error(db_path: Path) -> None:
    store = await open_sqlite(url_for(db_path), busy_timeout_ms=50)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process is writing and does not let go
        with pytest.raises(StoreUnavailable) as caught:
            await store.append(said("blocked"))
        assert caught.value.reason.startswith(f"the SQLite database at {db_path} is busy")
        assert "50 ms" in caught.value.reason
        with pytest.raises(StoreUnavailable, match="is busy"):
            await store.first_sighting("event-1", 60)
        other.execute("COMMIT")

        await store.append(said("after the lock"))  # the store recovers once the lock is gone
        assert [m.text for m in await store.load_thread(THREAD)] == ["after the lock"]
    finally:
        other.close()
        await store.close()


async def test_a_turn_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(
    db_path: Path,
) -> None:
    store = await open_sqlite(url_for(db_path), busy_timeout_ms=3000)
    other = sqlite3.connect(db_path, isolation_level=None, timeout=2)
    try:
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(store.append(said("never written")))
        await asyncio.sleep(0.2)  # the append now waits inside SQLite for the lock
        waiting.cancel()
        other.execute("COMMIT")  # the lock frees just as the turn is cancelled
        with pytest.raises(asyncio.CancelledError):
            await waiting

        await store.append(said("next turn"))
        other.execute("BEGIN IMMEDIATE")  # fails if the store kept a transaction open
        other.execute("COMMIT")
        texts = [row[0] for row in other.execute("SELECT text FROM messages")]
        assert texts == ["next turn"]
    finally:
        other.close()
        await store.close()


async def test_a_lease_wait_cancelled_mid_take_does_not_leave_the_lease_taken(
    db_path: Path,
) -> None:
    store = await open_sqlite(url_for(db_path), busy_timeout_ms=3000)
    other = sqlite3.connect(db_path, isolation_level=None, timeout=2)
    try:
        other.execute("BEGIN IMMEDIATE")
        taking = asyncio.create_task(_enter_and_leave(store, "thread:x", ttl_s=60))
        await asyncio.sleep(0.2)  # the take now waits inside SQLite for the write lock
        taking.cancel()
        other.execute("COMMIT")  # ...and lands just as its turn is cancelled
        with pytest.raises(asyncio.CancelledError):
            await taking

        assert await store.try_acquire_lease("thread:x", "next-turn", 60)
    finally:
        other.close()
        await store.close()


# Runs in a child process: the parent stays root-proof (root ignores file modes).
OPEN_AND_REPORT = """
import asyncio, sys
from core.store import StoreUnavailable, open_store

async def main() -> None:
    try:
        store = await open_store(sys.argv[1])
    except StoreUnavailable as exc:
        print("UNAVAILABLE", exc.reason)
        return
    await store.close()
    print("OPENED")

asyncio.run(main())
"""


def without_root_powers(command: list[str]) -> list[str]:
    """As root, drop the capabilities that let root write a 0444 file."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs setpriv (util-linux) to drop file-override powers")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", *command]


async def test_a_read_only_database_file_gives_a_clear_error_at_open(db_path: Path) -> None:
    store = await open_sqlite(url_for(db_path))
    await store.append(said("history"))
    await store.close()
    os.chmod(db_path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    child = await asyncio.create_subprocess_exec(
        *without_root_powers([sys.executable, "-c", OPEN_AND_REPORT, url_for(db_path)]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await child.communicate()

    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == (
        f"UNAVAILABLE the SQLite database at {db_path} is read-only: threadwise needs "
        "write access to the file and to its directory"
    )


HOLD_LEASE_UNTIL_TOLD = """
import asyncio, sys
from core.store import open_store

async def main() -> None:
    store = await open_store(sys.argv[1])
    async with store.lease("thread:x", 0.5):  # short TTL: kept alive by auto-renewal
        print("HELD", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print("RELEASED", flush=True)
    await store.close()

asyncio.run(main())
"""


async def test_leases_exclude_each_other_across_processes_sharing_the_file(
    db_path: Path,
) -> None:
    store = await open_sqlite(url_for(db_path))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_LEASE_UNTIL_TOLD, url_for(db_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert await child.stdout.readline() == b"HELD\n"
        waiter = asyncio.create_task(_enter_and_leave(store, "thread:x"))
        await asyncio.sleep(1.2)  # over two of the child's TTLs: its renewals keep it
        assert not waiter.done()
        assert not await store.try_acquire_lease("thread:x", "intruder", 5)

        child.stdin.write(b"release\n")
        await child.stdin.drain()
        async with asyncio.timeout(30):
            await waiter
            assert await child.stdout.readline() == b"RELEASED\n"
            assert await child.wait() == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await store.close()


async def _enter_and_leave(store: SQLiteStore, name: str, ttl_s: float = 5) -> None:
    async with store.lease(name, ttl_s):
        pass


async def test_a_refused_lease_release_is_retried_but_never_frees_a_later_holders_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = await SQLiteStore.open(str(tmp_path / "t.db"))
    other = await SQLiteStore.open(str(tmp_path / "t.db"))  # another process
    working = store.release_lease
    refuse = True

    async def flaky(name: str, token: str) -> bool:
        if refuse:
            raise StoreUnavailable("database is busy")
        return await working(name, token)

    monkeypatch.setattr(store, "release_lease", flaky)
    try:
        async with store.lease("thread:a", 5, auto_renew=False):
            pass  # the release is refused...
        refuse = False
        async with asyncio.timeout(2):  # ...and retried: the thread is free long before 5 s
            async with other.lease("thread:a", 5, auto_renew=False):
                pass

        refuse = True
        async with store.lease("thread:b", 0.3, auto_renew=False):
            pass
        await asyncio.sleep(0.35)  # expired: another process takes the thread
        assert await other.try_acquire_lease("thread:b", "theirs", 30)
        refuse = False
        await asyncio.sleep(0.6)  # a retry would have run by now
        assert not await other.try_acquire_lease("thread:b", "third", 30)  # still theirs

        refuse = True  # closing with a retry pending stops it quietly
        async with store.lease("thread:c", 5, auto_renew=False):
            pass
        before = len(asyncio.all_tasks())
        caplog.clear()
        await store.close()
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) < before
        assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []
    finally:
        await store.close()
        await other.close()
