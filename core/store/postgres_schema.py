"""PostgreSQL schema as an ordered list of migrations, recorded in schema_version.

Never edit a step that has shipped: append a new one. Steps run in one
transaction under a transaction-scoped advisory lock, so several processes
starting together migrate exactly once.
"""

from __future__ import annotations

# pg_advisory_xact_lock key for migrations: b"threadwi" as a signed bigint.
MIGRATION_LOCK_ID = 0x7468726561647769

BOOTSTRAP = """CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: history, coordination, media and usage
    (
        """CREATE TABLE messages (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform text NOT NULL,
            space text NOT NULL,
            channel text NOT NULL,
            root text NOT NULL,
            role text NOT NULL CHECK (role IN ('user', 'assistant')),
            author_id text NOT NULL,
            author_name text NOT NULL,
            text text NOT NULL,
            platform_id text,
            parent_id bigint REFERENCES messages(id) ON DELETE SET NULL,
            status text NOT NULL,
            media text NOT NULL DEFAULT '[]',
            tools text NOT NULL DEFAULT '[]',
            created_at double precision NOT NULL
        )""",
        # One thread's history is one index range scan (O(thread), not O(database)).
        "CREATE INDEX messages_by_thread ON messages (platform, space, channel, root, id)",
        "CREATE INDEX messages_by_platform_id ON messages (platform, channel, platform_id)",
        "CREATE INDEX messages_by_parent ON messages (parent_id)",
        """CREATE TABLE message_parts (
            message_id bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            platform text NOT NULL,
            channel text NOT NULL,
            platform_id text NOT NULL,
            PRIMARY KEY (message_id, platform_id)
        )""",
        "CREATE INDEX message_parts_by_platform_id "
        "ON message_parts (platform, channel, platform_id)",
        """CREATE TABLE thread_resets (
            platform text NOT NULL,
            space text NOT NULL,
            channel text NOT NULL,
            root text NOT NULL,
            after_id bigint NOT NULL,
            at double precision NOT NULL,
            PRIMARY KEY (platform, space, channel, root)
        )""",
        """CREATE TABLE idempotency_keys (
            key text PRIMARY KEY,
            expires_at timestamptz NOT NULL
        )""",
        "CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at)",
        """CREATE TABLE leases (
            name text PRIMARY KEY,
            token text NOT NULL UNIQUE,
            expires_at timestamptz NOT NULL
        )""",
        """CREATE TABLE media (
            sha256 text PRIMARY KEY,
            kind text NOT NULL,
            mime text NOT NULL,
            name text NOT NULL,
            data bytea NOT NULL,
            width integer,
            height integer
        )""",
        """CREATE TABLE usage (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform text NOT NULL,
            space text NOT NULL,
            channel text NOT NULL,
            root text NOT NULL,
            user_id text NOT NULL,
            model text NOT NULL,
            prompt_tokens bigint NOT NULL,
            completion_tokens bigint NOT NULL,
            cached_tokens bigint NOT NULL,
            reasoning_tokens bigint NOT NULL,
            at double precision NOT NULL
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
            name text PRIMARY KEY,
            value text NOT NULL,
            updated_at double precision NOT NULL
        )""",
    ),
)
