"""Composition root: settings → store, model client, service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.metrics import Metrics
from core.model import build_model_client
from core.model.types import ModelClient
from core.ports import Store
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


@asynccontextmanager
async def open_core(settings: Settings) -> AsyncIterator[Core]:
    store = await open_store(settings.database_url)
    model: ModelClient | None = None
    try:
        model = build_model_client(settings)
        metrics = Metrics()
        service = ConversationService(settings=settings, store=store, model=model, metrics=metrics)
        yield Core(settings, store, model, service, metrics)
    finally:
        if model is not None:
            await model.aclose()
        await store.close()
