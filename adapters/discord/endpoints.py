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

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import INTERNAL_API_VERSION, HTTPClient, Route

DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY = yarl.URL("wss://gateway.discord.gg/")
GATEWAY_HELLO = 10
GATEWAY_CHECK_S = 30.0


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


class GatewayUnreachable(ConnectionError):
    """The gateway did not answer. A ConnectionError (an OSError), so the command line
    prints it as one line and exits 1, like an unreachable REST API."""


async def reach_gateway(http: HTTPClient, *, timeout_s: float = GATEWAY_CHECK_S) -> None:
    """Open the gateway the bot will connect to, read its HELLO, and close again.

    discord.py cannot recover from a *first* connection that never opened: Client.connect
    logs a reconnect traceback and then fails on `self.ws.sequence` (AttributeError), and
    AutoShardedClient retries it every 5 s forever. Checking first turns a wrong
    DISCORD_GATEWAY_URL or a blocked network into GatewayUnreachable. Nothing is sent, so
    this counts against no identify limit.
    """
    gateway = DiscordWebSocket.DEFAULT_GATEWAY
    url = gateway.with_query(v=INTERNAL_API_VERSION, encoding="json")
    try:
        async with asyncio.timeout(timeout_s):
            socket = await http.ws_connect(str(url))  # discord.py's own session and proxy
            try:
                hello = await socket.receive_json()
            finally:
                await socket.close()
    except TimeoutError:
        raise GatewayUnreachable(
            f"cannot reach the Discord gateway at {gateway}: no answer in {timeout_s:.0f} s"
        ) from None
    except (OSError, aiohttp.ClientError, TypeError, ValueError) as exc:
        # TypeError/ValueError: it answered, but not with JSON (not a gateway)
        raise GatewayUnreachable(
            f"cannot reach the Discord gateway at {gateway}: {exc or type(exc).__name__}"
        ) from None
    if not isinstance(hello, dict) or hello.get("op") != GATEWAY_HELLO:
        raise GatewayUnreachable(f"{gateway} answered, but not as a Discord gateway")
