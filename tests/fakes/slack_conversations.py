"""The emulator's reading side: conversations.replies / history / info / members with
Slack's cursor pagination and visibility rules, and chat.postEphemeral."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from tests.fakes.slack_state import ChannelInfo, Ephemeral, Message, WorkspaceState

Params = dict[str, Any]
Answer = dict[str, Any]

REPLIES_LIMIT = 1000  # conversations.replies: default and maximum page size
HISTORY_DEFAULT, HISTORY_MAX = 100, 999
MEMBERS_DEFAULT = 100


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _limit(p: Params, default: int, maximum: int) -> int:
    try:
        value = int(p.get("limit") or default)
    except ValueError:
        value = default
    return max(1, min(value, maximum))


def _in_range(msgs: Sequence[Message], p: Params) -> list[Message]:
    """oldest/latest bound the range, exclusive unless inclusive is true (as Slack does)."""
    inclusive = str(p.get("inclusive", "")).lower() in ("1", "true")
    oldest = float(p.get("oldest") or 0)
    latest = float(p["latest"]) if p.get("latest") else None
    out = []
    for m in msgs:
        ts = float(m.ts)
        after = ts >= oldest if inclusive else ts > oldest or oldest == 0
        before = latest is None or (ts <= latest if inclusive else ts < latest)
        if after and before:
            out.append(m)
    return out


def _metadata(p: Params) -> bool:
    return str(p.get("include_all_metadata", "")).lower() in ("1", "true")


class Conversations:
    def __init__(self, state: WorkspaceState, bot_user: str, user_ids: Callable[[], list[str]],
                 error: Callable[[str], Exception]) -> None:
        self.state = state
        self.bot_user = bot_user
        self.user_ids = user_ids
        self.error = error  # builds the emulator's ApiError (slack_api imports this module)

    def methods(self) -> dict[str, Callable[[Params], Answer]]:
        return {
            "conversations.replies": self.replies,
            "conversations.history": self.history,
            "conversations.info": self.info,
            "conversations.members": self.members,
            "chat.postEphemeral": self.post_ephemeral,
        }

    # -- visibility ---------------------------------------------------------------------

    def _readable(self, channel: str) -> ChannelInfo:
        info = self.state.info(channel)
        if not info.bot_member and not channel.startswith("D"):
            raise self.error("channel_not_found" if info.is_private else "not_in_channel")
        return info

    def _members(self, info: ChannelInfo) -> list[str]:
        if info.members is not None:
            return sorted(info.members | ({self.bot_user} if info.bot_member else set()))
        return sorted(set(self.user_ids()))

    def _offset(self, cursor: Any) -> int:
        if not cursor:
            return 0
        try:
            return int(base64.b64decode(str(cursor)).decode().split(":", 1)[1])
        except (ValueError, IndexError) as exc:
            raise self.error("invalid_cursor") from exc

    def _page(self, items: Sequence[Any], p: Params, default: int, maximum: int) -> tuple[
        list[Any], Answer
    ]:
        start = self._offset(p.get("cursor"))
        size = _limit(p, default, maximum)
        page = list(items[start:start + size])
        more = start + size < len(items)
        meta = {"next_cursor": _cursor(start + size) if more else ""}
        return page, {"has_more": more, "response_metadata": meta}

    # -- methods ------------------------------------------------------------------------

    def replies(self, p: Params) -> Answer:
        channel = str(p.get("channel") or "")
        self._readable(channel)
        msgs = self.state.thread(channel, str(p.get("ts")))
        if not msgs:
            raise self.error("thread_not_found")
        page, meta = self._page(_in_range(msgs, p), p, REPLIES_LIMIT, REPLIES_LIMIT)
        return {"messages": [m.as_api(with_metadata=_metadata(p)) for m in page], **meta}

    def history(self, p: Params) -> Answer:
        channel = str(p.get("channel") or "")
        self._readable(channel)
        msgs = _in_range(self.state.top_level(channel), p)  # newest first
        page, meta = self._page(msgs, p, HISTORY_DEFAULT, HISTORY_MAX)
        out = []
        for m in page:
            api = m.as_api(with_metadata=_metadata(p))
            replies = len(self.state.thread(channel, m.ts)) - 1
            if replies > 0:
                api.update(thread_ts=m.ts, reply_count=replies)
            out.append(api)
        return {"messages": out, **meta}

    def info(self, p: Params) -> Answer:
        channel = str(p.get("channel") or "")
        info = self.state.info(channel)
        if info.is_private and not info.bot_member:
            raise self.error("channel_not_found")
        return {"channel": {
            "id": channel, "name": info.name, "is_channel": not info.is_private,
            "is_group": False, "is_im": channel.startswith("D"), "is_mpim": False,
            "is_private": info.is_private, "is_member": info.bot_member, "is_archived": False,
        }}

    def members(self, p: Params) -> Answer:
        info = self._readable(str(p.get("channel") or ""))
        page, meta = self._page(self._members(info), p, MEMBERS_DEFAULT, 1000)
        return {"members": page, "response_metadata": meta["response_metadata"]}

    def post_ephemeral(self, p: Params) -> Answer:
        channel, user = str(p.get("channel") or ""), str(p.get("user") or "")
        info = self._readable(channel)
        if user not in self._members(info):
            raise self.error("user_not_in_channel")
        text = p.get("markdown_text") if p.get("markdown_text") is not None else p.get("text")
        if not text:
            raise self.error("no_text")
        ts = self.state.next_ts()
        self.state.ephemerals.append(
            Ephemeral(channel, user, p.get("thread_ts") or None, str(text), ts)
        )
        return {"message_ts": ts}
