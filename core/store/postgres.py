"""PostgreSQL store (several processes or machines), via an asyncpg pool.

Same contract as the SQLite store. Lease and idempotency expiry use the
server's clock (now()), so the processes' own clocks never matter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, cast
from urllib.parse import unquote

import asyncpg

from core.ports import StaleLease
from core.store.codec import (
    MESSAGE_COLUMNS,
    encode_media,
    encode_tools,
    media_from_row,
    message_from_row,
)
from core.store.errors import SchemaTooNew, StoreUnavailable, mask_url
from core.store.lease import HeldLease, LeaseWaiters, hold_lease
from core.store.postgres_schema import BOOTSTRAP, MIGRATION_LOCK_ID, MIGRATIONS
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

_THREAD = "platform = $1 AND space = $2 AND channel = $3 AND root = $4"
_AFTER_RESET = f"id > COALESCE((SELECT after_id FROM thread_resets WHERE {_THREAD}), 0)"
_SECONDS = "make_interval(secs => $3::float8)"

# Errors that mean "the server or the link is gone", not "the query was wrong".
_CONNECTION_TROUBLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def _thread(key: ThreadKey) -> tuple[str, str, str, str]:
    return (key.platform, key.space, key.channel, key.root)


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL; a model could still produce one."""
    return value.replace("\x00", "\ufffd")


class PostgresStore:
    """core.ports.Store on a PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool, label: str) -> None:
        self._pool = pool
        self._label = label  # the URL with its password masked
        self._waiters = LeaseWaiters()
        self._next_purge = 0.0
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        label = mask_url(url)
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                ValueError) as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {label}: {_redact(str(exc), url)}"
            ) from exc
        store = cls(pool, label)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self) -> None:
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
                await conn.execute(BOOTSTRAP)
                version = int(
                    await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                )
                if version > len(MIGRATIONS):
                    raise SchemaTooNew(
                        f"the PostgreSQL database at {self._label} has schema version "
                        f"{version}, newer than this threadwise knows ({len(MIGRATIONS)}); "
                        "upgrade threadwise"
                    )
                for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in step:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
                    log.info("PostgreSQL schema at %s migrated to v%d", self._label, number)
                await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= now()")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except asyncpg.ReadOnlySQLTransactionError as exc:
            raise StoreUnavailable(
                f"the PostgreSQL database at {self._label} is read-only (a standby?): "
                "point DATABASE_URL at the primary"
            ) from exc
        except asyncpg.InsufficientPrivilegeError as exc:
            raise StoreUnavailable(
                f"the PostgreSQL user lacks a privilege on {self._label}: {exc}"
            ) from exc
        except asyncpg.DiskFullError as exc:
            raise StoreUnavailable(
                f"the PostgreSQL server at {self._label} is out of disk"
            ) from exc
        except _CONNECTION_TROUBLE as exc:
            raise StoreUnavailable(f"cannot reach PostgreSQL at {self._label}: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        with self._errors():
            return cast(list[asyncpg.Record], await self._pool.fetch(sql, *args))

    async def _read(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """A query that changes nothing, so it may be retried once on a fresh connection
        when the pooled one turned out dead (failover, idle timeout). Writes are never
        retried: a lost reply does not tell whether they committed."""
        try:
            return cast(list[asyncpg.Record], await self._pool.fetch(sql, *args))
        except _CONNECTION_TROUBLE as exc:
            log.info("PostgreSQL read failed (%s); retrying on a fresh connection", exc)
        return await self._fetch(sql, *args)

    # ------------------------------------------------------------ coordination

    async def first_sighting(self, idem_key: str, ttl_s: float) -> bool:
        rows = await self._fetch(
            "INSERT INTO idempotency_keys (key, expires_at) "
            "VALUES ($1, now() + make_interval(secs => $2::float8)) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at "
            "WHERE idempotency_keys.expires_at <= now() RETURNING key",
            idem_key, float(ttl_s),
        )
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            await self._fetch("DELETE FROM idempotency_keys WHERE expires_at <= now()")
        return bool(rows)

    def lease(
        self, name: str, ttl_s: float, *, auto_renew: bool = True
    ) -> AbstractAsyncContextManager[HeldLease]:
        return hold_lease(self, self._waiters, name, ttl_s, auto_renew=auto_renew)

    async def try_acquire_lease(self, name: str, token: str, ttl_s: float) -> bool:
        # Insert, or take over an expired row, in one atomic statement.
        rows = await self._fetch(
            f"INSERT INTO leases (name, token, expires_at) VALUES ($1, $2, now() + {_SECONDS}) "
            "ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, "
            "expires_at = EXCLUDED.expires_at WHERE leases.expires_at <= now() RETURNING token",
            name, token, float(ttl_s),
        )
        return bool(rows)

    async def lease_held(self, name: str) -> bool:
        rows = await self._fetch(
            "SELECT 1 FROM leases WHERE name = $1 AND expires_at > now()", name
        )
        return bool(rows)

    async def renew_lease(self, name: str, token: str, ttl_s: float) -> bool:
        rows = await self._fetch(
            f"UPDATE leases SET expires_at = now() + {_SECONDS} "
            "WHERE name = $1 AND token = $2 RETURNING name",
            name, token, float(ttl_s),
        )
        return bool(rows)

    async def release_lease(self, name: str, token: str) -> bool:
        rows = await self._fetch(
            "DELETE FROM leases WHERE name = $1 AND token = $2 RETURNING name", name, token
        )
        return bool(rows)

    # ------------------------------------------------------------ history

    async def append(self, msg: NewMessage, *, lease_token: str | None = None) -> StoredMessage:
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                if lease_token is not None:
                    await _check_lease(conn, lease_token, f"lease for {msg.key}")
                try:
                    row = await conn.fetchrow(
                        "INSERT INTO messages (platform, space, channel, root, role, author_id, "
                        "author_name, text, platform_id, parent_id, status, media, tools, "
                        "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
                        f"$12, $13, $14) RETURNING {MESSAGE_COLUMNS}",
                        *_thread(msg.key), msg.role, msg.author_id, _text(msg.author_name),
                        _text(msg.text), msg.platform_id, msg.parent_id, msg.status,
                        encode_media(msg.media), encode_tools(msg.tools), time.time(),
                    )
                except asyncpg.ForeignKeyViolationError as exc:
                    raise LookupError(f"parent message {msg.parent_id} is not stored") from exc
        return message_from_row(row)

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
            "text": None if text is None else _text(text),
            "status": status,
            "platform_id": platform_id,
            "tools": None if tools is None else encode_tools(tools),
            "media": None if media is None else encode_media(media),
        }
        sets = {column: value for column, value in changes.items() if value is not None}
        if not sets:
            return
        assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(sets, start=2))
        # One statement: FOR SHARE holds the lease row until it commits, so a takeover
        # lands entirely before (no row changes) or after it, with one round trip.
        fence, token = ("", ()) if lease_token is None else (
            f" AND EXISTS (SELECT 1 FROM leases WHERE token = ${len(sets) + 2} FOR SHARE)",
            (lease_token,),
        )
        rows = await self._fetch(
            f"UPDATE messages SET {assignments} WHERE id = $1{fence} RETURNING id",
            message_id, *sets.values(), *token,
        )
        if not rows and lease_token is not None and not await self._fetch(
            "SELECT 1 FROM leases WHERE token = $1", lease_token
        ):
            raise StaleLease(f"lease for message {message_id} was taken over; not writing")
        if not rows:
            raise LookupError(f"message {message_id} is not stored")

    async def load_thread(self, key: ThreadKey) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {_THREAD} AND {_AFTER_RESET} "
            "ORDER BY id",
            *_thread(key),
        )
        return [message_from_row(row) for row in rows]

    async def find(self, key: ThreadKey, platform_id: str) -> StoredMessage | None:
        rows = await self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {_THREAD} AND {_AFTER_RESET} "
            "AND (platform_id = $5 OR id IN (SELECT message_id FROM message_parts "
            "WHERE platform = $1 AND channel = $3 AND platform_id = $5)) ORDER BY id LIMIT 1",
            *_thread(key), platform_id,
        )
        return message_from_row(rows[0]) if rows else None

    async def locate(self, platform: str, channel: str, platform_id: str) -> StoredMessage | None:
        rows = await self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE platform = $1 AND channel = $2 "
            "AND platform_id = $3 UNION "
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT message_id "
            "FROM message_parts WHERE platform = $1 AND channel = $2 AND platform_id = $3) "
            "ORDER BY id LIMIT 1",
            platform, channel, platform_id,
        )
        return message_from_row(rows[0]) if rows else None

    async def add_platform_id(self, message_id: int, platform_id: str) -> None:
        rows = await self._fetch(
            "WITH m AS (SELECT id, platform, channel FROM messages WHERE id = $1), "
            "added AS (INSERT INTO message_parts (message_id, platform, channel, platform_id) "
            "SELECT id, platform, channel, $2 FROM m ON CONFLICT DO NOTHING) "
            "SELECT id FROM m",
            message_id, platform_id,
        )
        if not rows:
            raise LookupError(f"message {message_id} is not stored")

    async def reset_thread(self, key: ThreadKey) -> None:
        await self._fetch(
            "INSERT INTO thread_resets (platform, space, channel, root, after_id, at) "
            "VALUES ($1, $2, $3, $4, "
            f"(SELECT COALESCE(MAX(id), 0) FROM messages WHERE {_THREAD}), $5) "
            "ON CONFLICT (platform, space, channel, root) "
            "DO UPDATE SET after_id = EXCLUDED.after_id, at = EXCLUDED.at",
            *_thread(key), time.time(),
        )

    async def streaming_messages(self, key: ThreadKey) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {_THREAD} "
            "AND status = 'streaming' ORDER BY id",
            *_thread(key),
        )
        return [message_from_row(row) for row in rows]

    async def orphan_candidates(self, platform: str, older_than_s: float) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'streaming' "
            "AND platform = $1 AND created_at < $2 ORDER BY created_at LIMIT $3",
            platform, time.time() - older_than_s, ORPHAN_BATCH,
        )
        return [message_from_row(row) for row in rows]

    # ------------------------------------------------------------ settings

    async def put_setting(self, name: str, value: str | None) -> None:
        if value is None:
            await self._fetch("DELETE FROM settings WHERE name = $1", name)
            return
        await self._fetch(
            "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
            "updated_at = EXCLUDED.updated_at",
            _text(name), _text(value), time.time(),
        )

    async def settings(self, prefix: str) -> dict[str, str]:
        rows = await self._read(
            "SELECT name, value FROM settings WHERE left(name, $1) = $2", len(prefix), prefix
        )
        return {row["name"]: row["value"] for row in rows}

    # ------------------------------------------------------------ media, usage

    async def put_media(self, media: Media) -> None:
        await self._fetch(
            "INSERT INTO media (sha256, kind, mime, name, data, width, height) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sha256) DO NOTHING",
            media.sha256, media.kind, media.mime, _text(media.name), media.data,
            media.width, media.height,
        )

    async def get_media(self, sha256: str) -> Media | None:
        rows = await self._read(
            "SELECT kind, mime, name, data, width, height FROM media WHERE sha256 = $1", sha256
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
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *_thread(key), user_id, model, usage.prompt_tokens, usage.completion_tokens,
            usage.cached_tokens, usage.reasoning_tokens, float(at),
        )

    async def usage_since(
        self, *, since: float, channel: str | None = None, user_id: str | None = None
    ) -> Usage:
        rows = await self._read(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
            "COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(reasoning_tokens), 0) "
            "FROM usage WHERE at >= $1 AND ($2::text IS NULL OR channel = $2) "
            "AND ($3::text IS NULL OR user_id = $3)",
            float(since), channel, user_id,
        )
        return Usage(*(int(v) for v in rows[0]))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._waiters.close()
        await self._pool.close()


def _redact(text: str, url: str) -> str:
    """Drop the password from a driver message, should the driver ever echo it."""
    raw = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
    for secret in {raw, unquote(raw)} - {""}:
        text = text.replace(secret, "***")
    return text


async def _check_lease(conn: asyncpg.Connection, token: str, what: str) -> None:
    """Compare-and-set: FOR SHARE holds the lease row until the transaction commits, so
    a takeover lands entirely before (we fail) or after us (core/store/lease.py)."""
    if await conn.fetchval("SELECT 1 FROM leases WHERE token = $1 FOR SHARE", token) is None:
        raise StaleLease(f"{what} was taken over; not writing")
