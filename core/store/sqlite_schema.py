"""SQLite schema as an ordered list of migrations; PRAGMA user_version counts those applied.

Never edit a step that has shipped: append a new one. Each step runs inside the
open-time write transaction, together with the user_version bump, so a crash or a
second process starting at the same moment can not apply a step twice.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: history, coordination, media and usage
    (
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            space TEXT NOT NULL,
            channel TEXT NOT NULL,
            root TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            author_id TEXT NOT NULL,
            author_name TEXT NOT NULL,
            text TEXT NOT NULL,
            platform_id TEXT,
            parent_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
            status TEXT NOT NULL,
            media TEXT NOT NULL DEFAULT '[]',
            tools TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL
        )""",
        # One thread's history is one index range scan (O(thread), not O(database)).
        "CREATE INDEX messages_by_thread ON messages (platform, space, channel, root, id)",
        "CREATE INDEX messages_by_platform_id ON messages (platform, channel, platform_id)",
        "CREATE INDEX messages_by_parent ON messages (parent_id)",
        # Further platform messages of one stored message (long replies split in parts).
        """CREATE TABLE message_parts (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            platform TEXT NOT NULL,
            channel TEXT NOT NULL,
            platform_id TEXT NOT NULL,
            PRIMARY KEY (message_id, platform_id)
        )""",
        "CREATE INDEX message_parts_by_platform_id "
        "ON message_parts (platform, channel, platform_id)",
        # A reset hides every message of the thread with an id up to after_id.
        """CREATE TABLE thread_resets (
            platform TEXT NOT NULL,
            space TEXT NOT NULL,
            channel TEXT NOT NULL,
            root TEXT NOT NULL,
            after_id INTEGER NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (platform, space, channel, root)
        )""",
        """CREATE TABLE idempotency_keys (
            key TEXT PRIMARY KEY,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at)",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            token TEXT NOT NULL UNIQUE,
            expires_at REAL NOT NULL
        )""",
        """CREATE TABLE media (
            sha256 TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            mime TEXT NOT NULL,
            name TEXT NOT NULL,
            data BLOB NOT NULL,
            width INTEGER,
            height INTEGER
        )""",
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            space TEXT NOT NULL,
            channel TEXT NOT NULL,
            root TEXT NOT NULL,
            user_id TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            at REAL NOT NULL
        )""",
        "CREATE INDEX usage_by_time ON usage (at)",
        "CREATE INDEX usage_by_channel ON usage (channel, at)",
        "CREATE INDEX usage_by_user ON usage (user_id, at)",
    ),
    # 2: the orphan sweeper finds replies left 'streaming' without scanning history
    # (a partial index: it holds only the few rows mid-stream right now).
    (
        "CREATE INDEX messages_streaming ON messages (platform, created_at) "
        "WHERE status = 'streaming'",
    ),
    # 3: small named choices that must outlive a restart (a Discord channel's /model,
    # a plain channel's /reset mark).
    (
        """CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
)
