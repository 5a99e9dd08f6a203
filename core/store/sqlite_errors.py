"""Why a SQLite database can not be used, in words an operator can act on."""

from __future__ import annotations

import os
import sqlite3

from core.store.errors import StoreUnavailable


def checked_location(relative: str) -> str:
    """The absolute path; fail early with the reason SQLite would only call
    'unable to open database file'."""
    path = os.path.abspath(relative)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise StoreUnavailable(
            f"cannot open SQLite database at {path}: directory {directory} does not exist"
        )
    if os.path.isdir(path):
        raise StoreUnavailable(f"cannot open SQLite database at {path}: it is a directory")
    return path


def _cannot_open(path: str) -> str:
    """Why SQLite could not open an existing path (it only says 'unable to open')."""
    who = f"this user (uid {os.getuid()})" if hasattr(os, "getuid") else "this user"
    directory = os.path.dirname(path) or "."
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            kind = "read-only" if os.access(path, os.R_OK) else "not readable"
            return (f"the file exists but is {kind} for {who}; threadwise needs to read "
                    "and write it (and its directory)")
        if not os.access(directory, os.W_OK | os.X_OK):
            return (f"its directory {directory} is read-only for {who}; SQLite creates its "
                    "-wal and -shm files there")
    elif not os.access(directory, os.W_OK | os.X_OK):
        return (f"the file does not exist and its directory {directory} is read-only for "
                f"{who}, so it cannot be created")
    return "check that the path exists and that threadwise may read and write it"


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock this statement needs."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(
        exc
    ).lower()


def explain(exc: sqlite3.Error, label: str, busy_timeout_ms: int) -> StoreUnavailable | None:
    """Turn SQLite's terse errors into reasons an operator can act on."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = str(exc).lower()
    if is_busy(exc):
        return StoreUnavailable(
            f"the SQLite database at {label} is busy: another process held its write lock "
            f"for more than {busy_timeout_ms} ms. Try again; if several processes share the "
            "database, use PostgreSQL (DATABASE_URL=postgresql://…)",
            user_reason="the database is busy (another process is writing to it); "
            "please try again in a moment",
        )
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return StoreUnavailable(
            f"the SQLite database at {label} is read-only: threadwise needs write access "
            "to the file and to its directory",
            user_reason="the database is read-only, so I can't save this conversation; "
            "the bot's operator needs to fix its permissions",
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in text:
        return StoreUnavailable(f"cannot open SQLite database at {label}: {_cannot_open(label)}")
    if name.startswith("SQLITE_FULL"):
        return StoreUnavailable(
            f"the disk holding the SQLite database at {label} is full",
            user_reason="the bot's disk is full, so I can't save this conversation",
        )
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return StoreUnavailable(f"{label} is not a usable SQLite database (damaged or not SQLite)")
    if name.startswith("SQLITE_IOERR"):
        return StoreUnavailable(f"disk I/O error on the SQLite database at {label}")
    return None
