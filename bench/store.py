"""Section 5: load a thread and append a turn with N stored messages, SQLite and PostgreSQL.

The history is written straight into the schema open_store() created (executemany on
SQLite, COPY on PostgreSQL), with the threads' messages interleaved in time as a
busy workspace writes them. Then the real store API is timed: load_thread() of a
random thread, and append() of a message under that thread's lease, as a turn does.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.postgres import fresh_database
from core.ports import Store
from core.store import open_store
from core.types import NewMessage, ThreadKey
from tests.pg import PgServer

COLUMNS = (
    "platform", "space", "channel", "root", "role", "author_id", "author_name", "text",
    "platform_id", "parent_id", "status", "media", "tools", "created_at",
)
TEXT = ("This is a message of ordinary length in a busy team thread, talking about the "
        "release, the failing build and who will look at the flaky test tomorrow. ")
CHANNELS = 200
BATCH = 50_000

Row = tuple[str, str, str, str, str, str, str, str, str, int | None, str, str, str, float]


@dataclass
class StoreResult:
    backend: str
    messages: int
    threads: int
    fill_s: float = 0.0
    load: list[float] = field(default_factory=list)
    append: list[float] = field(default_factory=list)


def _key(thread: int) -> ThreadKey:
    return ThreadKey("slack", "T0BENCH", f"C{thread % CHANNELS:04d}", f"{1700000000 + thread}.0")


def _rows(messages: int, threads: int) -> Iterator[Row]:
    """Round-robin over threads; ids are assigned 1, 2, … in this order."""
    per_thread = messages // threads
    start = time.time() - messages
    for j in range(per_thread):
        for t in range(threads):
            key = _key(t)
            parent = (j - 1) * threads + t + 1 if j else None
            role = "user" if j % 2 == 0 else "assistant"
            yield (key.platform, key.space, key.channel, key.root, role, f"U{t % 5000:05d}",
                   f"Person {t % 5000}", f"{TEXT}({t}/{j})", f"{1700000000 + t}.{j:06d}",
                   parent, "complete", "[]", "[]", start + j * threads + t)


def _last_id(thread: int, messages: int, threads: int) -> int:
    return (messages // threads - 1) * threads + thread + 1


def _fill_sqlite(path: str, messages: int, threads: int) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous = OFF")
        sql = f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 14)})"
        rows = _rows(messages, threads)
        while batch := [row for _, row in zip(range(BATCH), rows, strict=False)]:
            with db:
                db.executemany(sql, batch)
        db.execute("ANALYZE")
    finally:
        db.close()


async def _fill_postgres(url: str, messages: int, threads: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        rows = _rows(messages, threads)
        while batch := [row for _, row in zip(range(BATCH), rows, strict=False)]:
            await conn.copy_records_to_table("messages", records=batch, columns=COLUMNS)
        await conn.execute("ANALYZE messages")
    finally:
        await conn.close()


async def _measure(store: Store, result: StoreResult, samples: int) -> None:
    rng = random.Random(7)
    for _ in range(20):  # warm the connection and the caches a little, as a live bot has
        await store.load_thread(_key(rng.randrange(result.threads)))
    for _ in range(samples):
        key = _key(rng.randrange(result.threads))
        started = time.perf_counter()
        await store.load_thread(key)
        result.load.append(time.perf_counter() - started)
    for thread in rng.sample(range(result.threads), samples):
        key = _key(thread)
        async with store.lease(f"thread:{key}", 30.0) as lease:
            message = NewMessage(
                key=key, role="user", author_id="U00001", author_name="Person 1",
                text=f"{TEXT}(new turn)", platform_id=f"{1800000000 + thread}.000001",
                parent_id=_last_id(thread, result.messages, result.threads),
            )
            started = time.perf_counter()
            await store.append(message, lease_token=lease.token)
            result.append.append(time.perf_counter() - started)


async def bench_sqlite(messages: int, threads: int, samples: int) -> StoreResult:
    result = StoreResult("SQLite", messages, threads)
    with tempfile.TemporaryDirectory(prefix="threadwise-store-") as workdir:
        path = str(Path(workdir) / "threadwise.db")
        await (await open_store(f"sqlite:///{path}")).close()  # creates the schema
        started = time.perf_counter()
        await asyncio.to_thread(_fill_sqlite, path, messages, threads)
        result.fill_s = time.perf_counter() - started
        store = await open_store(f"sqlite:///{path}")
        try:
            await _measure(store, result, samples)
        finally:
            await store.close()
    return result


async def bench_postgres(
    server: PgServer, messages: int, threads: int, samples: int
) -> StoreResult:
    result = StoreResult("PostgreSQL", messages, threads)
    async with fresh_database(server) as url:
        await (await open_store(url)).close()  # creates the schema
        started = time.perf_counter()
        await _fill_postgres(url, messages, threads)
        result.fill_s = time.perf_counter() - started
        store = await open_store(url)
        try:
            await _measure(store, result, samples)
        finally:
            await store.close()
    return result
