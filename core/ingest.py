"""A turn's attachments: fetched and normalised under caps, every refusal a note."""

from __future__ import annotations

import logging

from core.media import MediaLimits, normalise_async
from core.ports import ChatPort, FileRefused, HistoryStore
from core.settings import Settings
from core.types import Inbound, Media, MediaRef

log = logging.getLogger(__name__)


async def ingest(
    inbound: Inbound, port: ChatPort, store: HistoryStore, settings: Settings,
    limits: MediaLimits,
) -> tuple[tuple[MediaRef, ...], dict[str, Media], list[str]]:
    """Fetch and normalise attachments under caps; every refusal becomes a note."""
    refs: list[MediaRef] = []
    media: dict[str, Media] = {}
    notes: list[str] = []
    budget = settings.max_turn_media_bytes
    files = inbound.files
    if len(files) > settings.max_attachments:
        skipped = files[settings.max_attachments :]
        files = files[: settings.max_attachments]
        names = ", ".join(f.name for f in skipped[:5]) + ("…" if len(skipped) > 5 else "")
        notes.append(
            f"I only read the first {settings.max_attachments} attachments; "
            f"skipped {len(skipped)}: {names}"
        )
    for ref in files:
        try:
            cap = min(settings.max_file_bytes, budget)
            if ref.declared_size is not None and ref.declared_size > cap:
                raise FileRefused(
                    ref.name, f"is {_mb(ref.declared_size)}; the limit is {_mb(cap)}"
                )
            data = await port.fetch_file(ref, max_bytes=cap)
            item = await normalise_async(
                ref.name, data, detail=settings.model_image_detail,
                limits=limits,
            )
        except FileRefused as exc:
            log.info("file refused in %s: %s", inbound.key, exc)
            notes.append(f"I couldn't use {exc.name}: {exc.reason}")
            continue
        if item.note:
            notes.append(f"{item.name} {item.note}")
        budget -= len(item.data)
        await store.put_media(item)
        media[item.sha256] = item
        refs.append(MediaRef(item.sha256, item.kind, item.name))
    return tuple(refs), media, notes


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"
