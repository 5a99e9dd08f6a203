"""History + coordination stores behind core.ports.Store.

`open_store(DATABASE_URL)` picks the backend from the URL:
- `sqlite:///relative.db`, `sqlite:////absolute/path.db`, `sqlite:///:memory:` → SQLite
  (the default; one process, or a few on one machine sharing the file);
- `postgresql://…` / `postgres://…` → PostgreSQL (several processes or machines).
"""

from __future__ import annotations

from core.ports import StaleLease
from core.store.errors import SchemaTooNew, StoreUnavailable, mask_url
from core.store.lease import HeldLease
from core.store.postgres import PostgresStore
from core.store.sqlite import SQLiteStore

__all__ = [
    "HeldLease",
    "PostgresStore",
    "SQLiteStore",
    "SchemaTooNew",
    "StaleLease",
    "StoreUnavailable",
    "mask_url",
    "open_store",
    "sqlite_path",
]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def sqlite_path(database_url: str) -> str:
    """'sqlite:///a.db' -> 'a.db'; 'sqlite:////srv/a.db' -> '/srv/a.db' (SQLAlchemy form)."""
    if not database_url.startswith(_SQLITE_PREFIX):
        raise StoreUnavailable(f"not a SQLite URL: {mask_url(database_url)}")
    path = database_url[len(_SQLITE_PREFIX):]
    if not path:
        raise StoreUnavailable("the SQLite URL names no file: use sqlite:///threadwise.db")
    if "?" in path:
        raise StoreUnavailable(
            f"SQLite URL options are not supported ({database_url}); name just the file"
        )
    return path


async def open_store(
    database_url: str,
    *,
    busy_timeout_ms: int = 5000,
    pool_min_size: int = 1,
    pool_max_size: int = 10,
) -> SQLiteStore | PostgresStore:
    """Open (and migrate) the store named by DATABASE_URL; raise StoreUnavailable if we can't.

    busy_timeout_ms: SQLite only — how long a write waits for another process's lock.
    pool_min_size / pool_max_size: PostgreSQL only — the asyncpg connection pool.
    """
    if database_url.startswith(_SQLITE_PREFIX):
        return await SQLiteStore.open(sqlite_path(database_url), busy_timeout_ms=busy_timeout_ms)
    if database_url.startswith(_POSTGRES_PREFIXES):
        return await PostgresStore.open(
            database_url, min_size=pool_min_size, max_size=pool_max_size
        )
    raise StoreUnavailable(
        f"unsupported DATABASE_URL {mask_url(database_url)}: use sqlite:///path.db "
        "or postgresql://user:password@host/db"
    )

