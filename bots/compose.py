"""Composition root: settings → store, model client, service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from core.channel_overrides import ChannelOverrides
from core.metrics import Metrics
from core.model import build_model_client
from core.model.types import ModelClient
from core.ports import Store
from core.profiles import ConversationServices
from core.service import ConversationService
from core.settings import Settings
from core.store import open_store


@dataclass
class Core:
    settings: Settings
    store: Store
    model: ModelClient
    service: ConversationService
    metrics: Metrics
    overrides: ChannelOverrides = field(default_factory=ChannelOverrides)
    # Services for channel overrides and /model choices; their owner closes them.
    services: ConversationServices = field(init=False)

    def __post_init__(self) -> None:
        self.services = ConversationServices(self.service)


@asynccontextmanager
async def open_core(
    settings: Settings, overrides: ChannelOverrides | None = None
) -> AsyncIterator[Core]:
    store = await open_store(settings.database_url)
    model: ModelClient | None = None
    core: Core | None = None
    try:
        model = build_model_client(settings)
        metrics = Metrics()
        service = ConversationService(settings=settings, store=store, model=model, metrics=metrics)
        core = Core(settings, store, model, service, metrics, overrides or ChannelOverrides())
        yield core
    finally:
        if core is not None:
            await core.services.aclose()
        if model is not None:
            await model.aclose()
        await store.close()
