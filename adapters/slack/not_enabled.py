"""One short note when someone addresses the bot where SLACK_ALLOWED_CHANNELS leaves it out,
or in a channel whose THREADWISE_CONFIG allowed_users leaves them out.

Silence there looks like a broken bot, most of all in DMs, which Slack's Messages tab
and assistant view invite. The note says where the bot does answer, at most once per
thread (remembered in a bounded in-memory map, so a restart may say it once more),
and pings nobody: channel links (`<#C…>`) notify no one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.rate import SlackRateGate
from core.types import ThreadKey

log = logging.getLogger(__name__)

MAX_NAMED = 5  # channels listed in the note; more read as noise
USERS_ONLY = (
    "I only answer certain people in this channel, so I can't answer you here. "
    "Ask an admin if you need access."
)


def not_enabled_text(allowed: Sequence[str]) -> str:
    """The note, naming the allowed channels as links (DMs cannot be linked)."""
    channels = [c for c in allowed if not c.startswith("D")]
    if not channels:
        return "I'm not enabled here, so I can't answer."
    links = ", ".join(f"<#{c}>" for c in channels[:MAX_NAMED])
    more = f" and {len(channels) - MAX_NAMED} more" if len(channels) > MAX_NAMED else ""
    return f"I'm not enabled here, so I can't answer. You can mention me in {links}{more}."


class NotEnabledNotice:
    def __init__(
        self, client: AsyncWebClient, gate: SlackRateGate, allowed: Sequence[str], *,
        remember: int = 10_000,
    ) -> None:
        self._client = client
        self._gate = gate
        self._text = not_enabled_text(allowed)
        self._told: OrderedDict[ThreadKey, None] = OrderedDict()
        self._remember = remember

    def first_in(self, key: ThreadKey) -> bool:
        """True once per thread: claim it before the note is sent, so that duplicate
        deliveries and a second mention in the same thread stay quiet."""
        if key in self._told:
            self._told.move_to_end(key)
            return False
        self._told[key] = None
        while len(self._told) > self._remember:
            self._told.popitem(last=False)
        return True

    async def tell(self, key: ThreadKey, *, for_user: bool = False) -> None:
        """Say it once; for_user: the channel is open, but not to this person."""
        if for_user:
            log.info("addressed in %s by someone its allowed_users (THREADWISE_CONFIG) "
                     "leaves out; saying so once", key)
            text = USERS_ONLY
        else:
            log.info("addressed in %s, which SLACK_ALLOWED_CHANNELS leaves out; saying so "
                     "once", key)
            text = self._text
        try:
            await self._gate.acquire("chat.postMessage", key.space, key.channel)
            # `text` (Slack's mrkdwn) is where <#C…> renders as a channel link.
            await self._client.chat_postMessage(
                channel=key.channel, thread_ts=key.root, text=text,
                unfurl_links=False, unfurl_media=False,
            )
        except Exception as exc:  # a courtesy note; nothing to retry or report
            log.info("could not say the bot is not enabled in %s: %s", key, exc)
