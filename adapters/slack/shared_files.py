"""Files that events announce by id only, as Slack Connect does.

A file shared from another organisation arrives as `{"id": …, "mode": "file_access",
"file_access": "check_file_info"}`: no name, no URL. files.info (files:read, Tier 4)
returns the full object. When that fails the file is still passed on, without a URL,
so the reply says it could not be read instead of answering as if nothing was attached.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.rate import SlackRateGate

log = logging.getLogger(__name__)

SlackFile = Mapping[str, Any]


def needs_lookup(f: SlackFile) -> bool:
    return f.get("file_access") == "check_file_info" or f.get("mode") == "file_access"


class SharedFiles:
    def __init__(self, client: AsyncWebClient, gate: SlackRateGate) -> None:
        self._client = client
        self._gate = gate

    async def complete(self, files: Iterable[SlackFile], team: str) -> list[SlackFile]:
        """The files with every id-only entry replaced by its full object where Slack
        gives it to us."""
        return [await self._lookup(f, team) if needs_lookup(f) else f for f in files]

    async def _lookup(self, f: SlackFile, team: str) -> SlackFile:
        try:
            await self._gate.acquire("files.info", team)
            resp = await self._client.files_info(file=str(f.get("id")))
        except Exception as exc:  # refused or unreachable: the reply will say so
            log.info("files.info for a shared file failed: %s", exc)
            return f
        full = resp.get("file")
        return full if isinstance(full, Mapping) else f
