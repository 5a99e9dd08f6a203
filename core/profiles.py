"""One ConversationService per (model, system prompt) in use.

Channel overrides and Discord's /model answer with their own model and instructions.
All services share the store, write budgets, metrics, tokenizer and the replies
awaiting a save, so limits and history stay common (one orphan sweep serves all).
Each model has one client, shared by its system prompts.
"""

from __future__ import annotations

from collections.abc import Callable

from core.model import build_model_client
from core.model.types import ModelClient
from core.service import ConversationService
from core.settings import Settings


class ConversationServices:
    def __init__(
        self, base: ConversationService,
        build_model: Callable[[Settings], ModelClient] = build_model_client,
    ) -> None:
        self.base = base
        self._build_model = build_model
        self._clients: dict[str, ModelClient] = {base.settings.model_name: base.model}
        self._services: dict[tuple[str, str], ConversationService] = {}

    def get(self, *, model: str | None = None, system_prompt: str | None = None
            ) -> ConversationService:
        """The service answering with `model` and `system_prompt`; None = the configured."""
        settings = self.base.settings
        model = model or settings.model_name
        system_prompt = system_prompt or settings.system_prompt
        if model == settings.model_name and system_prompt == settings.system_prompt:
            return self.base
        service = self._services.get((model, system_prompt))
        if service is None:
            tailored = settings.model_copy(
                update={"model_name": model, "system_prompt": system_prompt}
            )
            client = self._clients.get(model)
            if client is None:
                client = self._clients[model] = self._build_model(tailored)
            service = ConversationService(
                settings=tailored, store=self.base.store, model=client,
                metrics=self.base.metrics, tokenizer=self.base.tokenizer,
                budgets=self.base.budgets, unsaved=self.base.unsaved,
            )
            self._services[(model, system_prompt)] = service
        return service

    async def aclose(self) -> None:
        """Close the clients built here; the base service's is its owner's to close."""
        for client in self._clients.values():
            if client is not self.base.model:
                await client.aclose()
        self._clients = {self.base.settings.model_name: self.base.model}
        self._services.clear()
