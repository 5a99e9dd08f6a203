"""Point discord.py at another Discord (a local emulator, a proxy) for one client's lifetime.

discord.py keeps its REST base in the class attribute `discord.http.Route.BASE` and its gateway
in `DiscordWebSocket.DEFAULT_GATEWAY`. Every request builds a `Route(...)` by that exact name
(the interaction webhooks too), and `Client.connect` names `DiscordWebSocket` directly, so a
subclass is never used; and the interaction callbacks bypass `HTTPClient.request`, so a
per-client request hook would miss them. What is left is to set the two class attributes.

We do it in a scope: `endpoints_overridden(...)` sets both while the bot runs and puts the
previous values back when it stops, so later clients in the same process (tests) see the
defaults again. Two clients running *at the same time* with *different* endpoints cannot both
be honoured; entering a second, conflicting scope raises instead of silently re-pointing the
first client. With no override configured nothing is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY = yarl.URL("wss://gateway.discord.gg/")


class EndpointConflict(RuntimeError):
    """Another Discord client in this process already points somewhere else."""


@contextmanager
def endpoints_overridden(api_url: str | None, gateway_url: str | None) -> Iterator[None]:
    """Use api_url / gateway_url (None = Discord's) for the duration of the block."""
    saved_api, saved_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    api = api_url.rstrip("/") if api_url else None
    gateway = yarl.URL(gateway_url) if gateway_url else None
    if api is not None and saved_api not in (DISCORD_API_BASE, api):
        raise EndpointConflict(f"discord.py already points at {saved_api}")
    if gateway is not None and saved_gateway not in (DISCORD_GATEWAY, gateway):
        raise EndpointConflict(f"discord.py gateway already points at {saved_gateway}")
    if api is not None:
        Route.BASE = api
    if gateway is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = gateway
    try:
        yield
    finally:
        Route.BASE = saved_api
        DiscordWebSocket.DEFAULT_GATEWAY = saved_gateway
