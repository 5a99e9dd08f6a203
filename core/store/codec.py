"""Row <-> value conversions shared by the SQL stores (same columns in both)."""

from __future__ import annotations

import json
from typing import Any, Protocol, cast

from core.types import (
    Media,
    MediaKind,
    MediaRef,
    MessageStatus,
    Role,
    StoredMessage,
    ThreadKey,
    ToolExchange,
)

# The columns every message query selects, in this order.
MESSAGE_COLUMNS = (
    "id, platform, space, channel, root, role, author_id, author_name, text, "
    "platform_id, parent_id, status, media, tools, created_at"
)


class Row(Protocol):
    """sqlite3.Row and asyncpg.Record both index by column name."""

    def __getitem__(self, key: str) -> Any: ...


def encode_media(refs: tuple[MediaRef, ...]) -> str:
    return _dumps([{"sha256": r.sha256, "kind": r.kind, "name": r.name} for r in refs])


def encode_tools(tools: tuple[ToolExchange, ...]) -> str:
    return _dumps(
        [
            {"call_id": t.call_id, "name": t.name, "arguments": t.arguments, "output": t.output}
            for t in tools
        ]
    )


def message_from_row(row: Row) -> StoredMessage:
    key = ThreadKey(row["platform"], row["space"], row["channel"], row["root"])
    media = tuple(
        MediaRef(sha256=m["sha256"], kind=cast(MediaKind, m["kind"]), name=m["name"])
        for m in json.loads(row["media"])
    )
    tools = tuple(
        ToolExchange(
            call_id=t["call_id"], name=t["name"], arguments=t["arguments"], output=t["output"]
        )
        for t in json.loads(row["tools"])
    )
    parent = row["parent_id"]
    return StoredMessage(
        id=int(row["id"]),
        key=key,
        role=cast(Role, row["role"]),
        author_id=row["author_id"],
        author_name=row["author_name"],
        text=row["text"],
        platform_id=row["platform_id"],
        parent_id=None if parent is None else int(parent),
        created_at=float(row["created_at"]),
        media=media,
        tools=tools,
        status=cast(MessageStatus, row["status"]),
    )


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def media_from_row(row: Row, sha256: str) -> Media:
    return Media(
        kind=cast(MediaKind, row["kind"]),
        mime=row["mime"],
        name=row["name"],
        data=bytes(row["data"]),
        sha256=sha256,
        width=row["width"],
        height=row["height"],
    )
