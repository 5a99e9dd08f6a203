"""SQLite store (the default): history and coordination in one file, via aiosqlite.

One connection per store; an asyncio.Lock keeps one statement or transaction on
it at a time, and BEGIN IMMEDIATE makes multi-statement writes atomic against
other processes sharing the file. Times are this host's clock (one machine).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from typing import Any, cast

import aiosqlite

from core.ports import StaleLease
from core.store.codec import (
    MESSAGE_COLUMNS,
    encode_media,
    encode_tools,
    media_from_row,
    message_from_row,
)
from core.store.errors import SchemaTooNew, StoreUnavailable
from core.store.lease import HeldLease, LeaseWaiters, hold_lease
from core.store.sqlite_errors import checked_location, explain, is_busy
from core.store.sqlite_schema import MIGRATIONS
from core.types import (
    Media,
    MediaRef,
    MessageStatus,
    NewMessage,
    StoredMessage,
    ThreadKey,
    ToolExchange,
    Usage,
)

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0  # how often first_sighting also deletes expired keys
ORPHAN_BATCH = 100  # orphan candidates returned per call (a sweep takes them in turn)

_THREAD = "platform = ? AND space = ? AND channel = ? AND root = ?"
_HELD = "SELECT 1 FROM leases WHERE token = ?"
_FENCE = f" AND EXISTS ({_HELD})"  # an UPDATE that lands only while the lease is held
_AFTER_RESET = f"id > COALESCE((SELECT after_id FROM thread_resets WHERE {_THREAD}), 0)"


def _thread(key: ThreadKey) -> tuple[str, str, str, str]:
    return (key.platform, key.space, key.channel, key.root)


class SQLiteStore:
    """core.ports.Store on one SQLite file (or :memory: for tests)."""

    def __init__(self, db: aiosqlite.Connection, label: str, busy_timeout_ms: int) -> None:
        self._db = db
        self._label = label  # absolute path, for messages
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = asyncio.Lock()
        self._waiters = LeaseWaiters()
        self._next_purge = 0.0
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(cls, path: str, *, busy_timeout_ms: int = 5000) -> SQLiteStore:
        label = path if path == ":memory:" else checked_location(path)
        try:
            db = await aiosqlite.connect(
                path, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise explain(exc, label, busy_timeout_ms) or StoreUnavailable(
                f"cannot open SQLite database at {label}: {exc}"
            ) from exc
        db.row_factory = sqlite3.Row
        store = cls(db, label, busy_timeout_ms)
        try:
            await store._configure()
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def _configure(self) -> None:
        with self._errors():
            mode = await self._journal_wal()
            if mode != "wal" and self._label != ":memory:":
                log.warning("SQLite at %s runs in %s mode, not WAL", self._label, mode)
            # WAL + NORMAL syncs at checkpoints, not at every commit: committed data
            # survives an application crash; a power loss may drop the last few
            # commits. That is an acceptable trade for chat history.
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await self._db.execute("PRAGMA foreign_keys = ON")

    async def _journal_wal(self) -> str:
        # Switching a fresh file to WAL takes an exclusive lock, and SQLite answers
        # "locked" at once, without its busy handler, while another connection (another
        # process starting up) opens the same file: retry within the busy timeout.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                rows = await self._db.execute_fetchall("PRAGMA journal_mode = WAL")
                return str(next(iter(rows))[0]).lower()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)

    async def _migrate(self) -> None:
        async with self._transaction() as db:
            rows = await db.execute_fetchall("PRAGMA user_version")
            version = int(next(iter(rows))[0])
            if version > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the SQLite database at {self._label} has schema version {version}, "
                    f"newer than this threadwise knows ({len(MIGRATIONS)}); upgrade threadwise"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    await db.execute(statement)
            if version < len(MIGRATIONS):
                await db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
                log.info("SQLite schema at %s migrated to v%d", self._label, len(MIGRATIONS))
            # Always a real write, so a read-only file fails now, at start-up.
            await db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (time.time(),))

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            explained = explain(exc, self._label, self._busy_timeout_ms)
            if explained is None:
                raise
            raise explained from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so the transaction cannot
        fail half-way on a lock upgrade; waits up to busy_timeout for other writers."""
        async with self._lock:
            with self._errors():
                try:
                    await self._db.execute("BEGIN IMMEDIATE")
                except asyncio.CancelledError:
                    # aiosqlite still runs the BEGIN in its thread: undo it, or the
                    # next task's statements would land in a transaction nobody ends.
                    await asyncio.shield(self._rollback())
                    raise
                try:
                    yield self._db
                except BaseException:
                    await asyncio.shield(self._rollback())
                    raise
                await self._db.execute("COMMIT")

    async def _rollback(self) -> None:
        with suppress(sqlite3.Error):  # e.g. SQLite already rolled back after an I/O error
            await self._db.execute("ROLLBACK")

    async def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """One statement in autocommit mode (a write here is atomic on its own)."""
        async with self._lock:
            with self._errors():
                rows = await self._db.execute_fetchall(sql, tuple(params))
        return cast(list[sqlite3.Row], list(rows))

    # ------------------------------------------------------------ coordination

    async def first_sighting(self, idem_key: str, ttl_s: float) -> bool:
        now = time.time()
        rows = await self._fetch(
            "INSERT INTO idempotency_keys (key, expires_at) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
            "WHERE idempotency_keys.expires_at <= ? RETURNING key",
            (idem_key, now + ttl_s, now),
        )
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            await self._fetch("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
        return bool(rows)

    def lease(
        self, name: str, ttl_s: float, *, auto_renew: bool = True
    ) -> AbstractAsyncContextManager[HeldLease]:
        return hold_lease(self, self._waiters, name, ttl_s, auto_renew=auto_renew)

    async def try_acquire_lease(self, name: str, token: str, ttl_s: float) -> bool:
        now = time.time()
        rows = await self._fetch(
            "INSERT INTO leases (name, token, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET token = excluded.token, "
            "expires_at = excluded.expires_at WHERE leases.expires_at <= ? RETURNING token",
            (name, token, now + ttl_s, now),
        )
        return bool(rows)

    async def lease_held(self, name: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM leases WHERE name = ? AND expires_at > ?", (name, time.time())
        )
        return bool(rows)

    async def renew_lease(self, name: str, token: str, ttl_s: float) -> bool:
        rows = await self._fetch(
            "UPDATE leases SET expires_at = ? WHERE name = ? AND token = ? RETURNING name",
            (time.time() + ttl_s, name, token),
        )
        return bool(rows)

    async def release_lease(self, name: str, token: str) -> bool:
        rows = await self._fetch(
            "DELETE FROM leases WHERE name = ? AND token = ? RETURNING name", (name, token)
        )
        return bool(rows)

    # ------------------------------------------------------------ history

    async def append(self, msg: NewMessage, *, lease_token: str | None = None) -> StoredMessage:
        try:
            async with self._transaction() as db:
                if lease_token is not None:
                    await _check_lease(db, lease_token, f"lease for {msg.key}")
                rows = await db.execute_fetchall(
                    "INSERT INTO messages (platform, space, channel, root, role, author_id, "
                    "author_name, text, platform_id, parent_id, status, media, tools, "
                    f"created_at) VALUES ({', '.join('?' * 14)}) RETURNING {MESSAGE_COLUMNS}",
                    (
                        *_thread(msg.key),
                        msg.role,
                        msg.author_id,
                        msg.author_name,
                        msg.text,
                        msg.platform_id,
                        msg.parent_id,
                        msg.status,
                        encode_media(msg.media),
                        encode_tools(msg.tools),
                        time.time(),
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise LookupError(f"parent message {msg.parent_id} is not stored") from exc
        return message_from_row(next(iter(rows)))

    async def update(
        self,
        message_id: int,
        *,
        text: str | None = None,
        status: MessageStatus | None = None,
        platform_id: str | None = None,
        tools: tuple[ToolExchange, ...] | None = None,
        media: tuple[MediaRef, ...] | None = None,
        lease_token: str | None = None,
    ) -> None:
        changes = {
            "text": text,
            "status": status,
            "platform_id": platform_id,
            "tools": None if tools is None else encode_tools(tools),
            "media": None if media is None else encode_media(media),
        }
        sets = {column: value for column, value in changes.items() if value is not None}
        if not sets:
            return
        assignments = ", ".join(f"{column} = ?" for column in sets)
        # One statement, so one write lock: fenced without a multi-statement transaction
        # holding the lock while this task waits for its next turn of the event loop.
        fence, token = ("", ()) if lease_token is None else (_FENCE, (lease_token,))
        rows = await self._fetch(
            f"UPDATE messages SET {assignments} WHERE id = ?{fence} RETURNING id",
            (*sets.values(), message_id, *token),
        )
        if not rows and lease_token is not None and not await self._fetch(_HELD, token):
            raise StaleLease(f"lease for message {message_id} was taken over; not writing")
        if not rows:
            raise LookupError(f"message {message_id} is not stored")

    async def load_thread(self, key: ThreadKey) -> list[StoredMessage]:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {_THREAD} AND {_AFTER_RESET} "
            "ORDER BY id",
            (*_thread(key), *_thread(key)),
        )
        return [message_from_row(row) for row in rows]

    async def find(self, key: ThreadKey, platform_id: str) -> StoredMessage | None:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {_THREAD} AND {_AFTER_RESET} "
            "AND (platform_id = ? OR id IN (SELECT message_id FROM message_parts "
            "WHERE platform = ? AND channel = ? AND platform_id = ?)) ORDER BY id LIMIT 1",
            (*_thread(key), *_thread(key), platform_id, key.platform, key.channel, platform_id),
        )
        return message_from_row(rows[0]) if rows else None

    async def locate(self, platform: str, channel: str, platform_id: str) -> StoredMessage | None:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE platform = ? AND channel = ? "
            "AND platform_id = ? UNION "
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT message_id "
            "FROM message_parts WHERE platform = ? AND channel = ? AND platform_id = ?) "
            "ORDER BY id LIMIT 1",
            (platform, channel, platform_id, platform, channel, platform_id),
        )
        return message_from_row(rows[0]) if rows else None

    async def add_platform_id(self, message_id: int, platform_id: str) -> None:
        async with self._transaction() as db:
            found = list(
                await db.execute_fetchall(
                    "SELECT platform, channel FROM messages WHERE id = ?", (message_id,)
                )
            )
            if not found:
                raise LookupError(f"message {message_id} is not stored")
            platform, channel = found[0]
            await db.execute(
                "INSERT INTO message_parts (message_id, platform, channel, platform_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (message_id, platform, channel, platform_id),
            )

    async def reset_thread(self, key: ThreadKey) -> None:
        await self._fetch(
            "INSERT INTO thread_resets (platform, space, channel, root, after_id, at) "
            f"VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(id), 0) FROM messages WHERE {_THREAD}), ?) "
            "ON CONFLICT (platform, space, channel, root) "
            "DO UPDATE SET after_id = excluded.after_id, at = excluded.at",
            (*_thread(key), *_thread(key), time.time()),
        )

    async def streaming_messages(self, key: ThreadKey) -> list[StoredMessage]:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {_THREAD} "
            "AND status = 'streaming' ORDER BY id",
            _thread(key),
        )
        return [message_from_row(row) for row in rows]

    async def orphan_candidates(self, platform: str, older_than_s: float) -> list[StoredMessage]:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'streaming' "
            "AND platform = ? AND created_at < ? ORDER BY created_at LIMIT ?",
            (platform, time.time() - older_than_s, ORPHAN_BATCH),
        )
        return [message_from_row(row) for row in rows]

    # ------------------------------------------------------------ settings

    async def put_setting(self, name: str, value: str | None) -> None:
        if value is None:
            await self._fetch("DELETE FROM settings WHERE name = ?", (name,))
            return
        await self._fetch(
            "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (name, value, time.time()),
        )

    async def settings(self, prefix: str) -> dict[str, str]:
        rows = await self._fetch(
            "SELECT name, value FROM settings WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
        )
        return {row[0]: row[1] for row in rows}

    # ------------------------------------------------------------ media, usage

    async def put_media(self, media: Media) -> None:
        await self._fetch(
            "INSERT INTO media (sha256, kind, mime, name, data, width, height) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
            (media.sha256, media.kind, media.mime, media.name, media.data,
             media.width, media.height),
        )

    async def get_media(self, sha256: str) -> Media | None:
        rows = await self._fetch(
            "SELECT kind, mime, name, data, width, height FROM media WHERE sha256 = ?", (sha256,)
        )
        if not rows:
            return None
        return media_from_row(rows[0], sha256)

    async def record_usage(
        self, key: ThreadKey, user_id: str, model: str, usage: Usage, at: float
    ) -> None:
        await self._fetch(
            "INSERT INTO usage (platform, space, channel, root, user_id, model, prompt_tokens, "
            "completion_tokens, cached_tokens, reasoning_tokens, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*_thread(key), user_id, model, usage.prompt_tokens, usage.completion_tokens,
             usage.cached_tokens, usage.reasoning_tokens, at),
        )

    async def usage_since(
        self, *, since: float, channel: str | None = None, user_id: str | None = None
    ) -> Usage:
        where: list[str] = ["at >= ?"]
        params: list[float | str] = [since]
        if channel is not None:
            where.append("channel = ?")
            params.append(channel)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        rows = await self._fetch(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
            "COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(reasoning_tokens), 0) "
            f"FROM usage WHERE {' AND '.join(where)}",
            params,
        )
        return Usage(*(int(v) for v in rows[0]))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._waiters.close()
        async with self._lock:
            await self._db.close()


async def _check_lease(db: aiosqlite.Connection, token: str, what: str) -> None:
    """Compare-and-set: run inside the write transaction that makes the change, so a
    takeover lands entirely before or after it (token, not sequence: core/store/lease.py)."""
    if not list(await db.execute_fetchall(_HELD, (token,))):
        raise StaleLease(f"{what} was taken over; not writing")
