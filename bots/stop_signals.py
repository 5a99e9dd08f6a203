"""SIGINT/SIGTERM as an asyncio.Event, for the long-running bots.

Each bot stops taking new messages when it is set and gives the replies being
written a short grace. In Docker the bot is PID 1, which ignores an unhandled
SIGTERM, so without this `docker stop` would wait and then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """Within the running loop: an event that SIGINT or SIGTERM sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, nor outside the main thread: the bots still run, unstoppable
        # by signal, as before.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
