"""Real `threadwise` bot processes for multi-process tests, always cleaned up.

Each process runs `python -m bots.cli <command>` in its own process group with its
log in a file; it is ready once GET /healthz answers 200 on its port: the one it
logged (with PORT=0 it picks a free one, so ports never race), or the PORT it was
given (Slack Socket Mode does not log one). `Fleet.close()` (a
fixture finaliser) SIGKILLs every group still alive, whatever the test did, and
hands every process's log to the suite's secret scanner (`scan`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
# What `threadwise slack` (HTTP mode) and `threadwise discord` log once listening.
LISTENING = re.compile(r"(?:HTTP mode on port|/healthz and /metrics on port) (\d+)")
START_TIMEOUT_S = 30.0


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any threadwise setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(
        ("MODEL_", "SLACK_", "DISCORD_", "GMI_", "OPENAI_", "DATABASE_", "THREADWISE_"))}
    # DEBUG: the most the product may log, all of it scanned for secrets afterwards.
    env.update({"PYTHONPATH": str(ROOT), "PORT": "0", "LOG_LEVEL": "DEBUG"})
    env.update(values)
    return env


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    log_path: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def turns(self) -> dict[str, float]:
        """This process's threadwise_turns_total by outcome, from GET /metrics."""
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as resp:
            text = await resp.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "threadwise_turns_total":
                    outcome = sample.labels["outcome"]
                    out[outcome] = out.get(outcome, 0.0) + sample.value
        return out


class Fleet:
    """Starts bot processes; kills every one at teardown."""

    def __init__(
        self, workdir: Path, command: str, *, scan: Callable[[str, str], None] | None = None
    ) -> None:
        self.workdir = workdir
        self.command = command
        self.scan = scan  # (output, origin): e.g. LogHygiene.check_output
        self.bots: list[BotProcess] = []

    async def start(self, *envs: dict[str, str]) -> list[BotProcess]:
        """One process per environment, started together; returns them once all are ready."""
        started = [await self._spawn(env) for env in envs]
        await asyncio.gather(*(self._ready(bot) for bot in started))
        return started

    async def _spawn(self, env: dict[str, str]) -> BotProcess:
        log_path = self.workdir / f"{self.command}-{len(self.bots)}.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bots.cli", self.command, env=env, cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # its own process group: killed as a whole
            )
        bot = BotProcess(proc, log_path, port=int(env.get("PORT", "0")))
        self.bots.append(bot)
        return bot

    async def _ready(self, bot: BotProcess) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        status = 0
        async with aiohttp.ClientSession() as http:
            while status != 200:
                if bot.proc.returncode is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"threadwise {self.command} did not get ready:\n{bot.log()[-3000:]}"
                    )
                found = LISTENING.search(bot.log())
                if found:
                    bot.port = int(found.group(1))
                if bot.port:
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        async with http.get(bot.url + "/healthz") as resp:
                            status = resp.status
                if status != 200:
                    await asyncio.sleep(0.05)

    async def kill(self, bot: BotProcess) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crashed host."""
        if bot.proc.returncode is None:
            os.killpg(bot.proc.pid, signal.SIGKILL)
            await bot.proc.wait()

    def freeze(self, bot: BotProcess) -> None:
        """SIGSTOP: the process stops dead but keeps its sockets, like a long GC pause,
        a frozen VM or a network partition; thaw() lets it run on as if nothing happened."""
        os.killpg(bot.proc.pid, signal.SIGSTOP)

    def thaw(self, bot: BotProcess) -> None:
        os.killpg(bot.proc.pid, signal.SIGCONT)

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for bot in self.bots:
            if bot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bot.proc.pid, signal.SIGKILL)  # works on a frozen one too
        await asyncio.gather(*(bot.proc.wait() for bot in self.bots))
        if self.scan is not None:
            for n, bot in enumerate(self.bots):
                self.scan(bot.log(), f"threadwise {self.command} process {n}")


def free_port() -> int:
    """A port nobody listens on now (for a process that will not log its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def turn_totals(bots: list[BotProcess]) -> dict[str, float]:
    """threadwise_turns_total by outcome, summed over the processes."""
    totals: dict[str, float] = {}
    for counts in await asyncio.gather(*(bot.turns() for bot in bots)):
        for outcome, value in counts.items():
            totals[outcome] = totals.get(outcome, 0.0) + value
    return totals


async def until_turns(bots: list[BotProcess], **expected: float) -> dict[str, float]:
    """Wait until the processes together counted at least these turn outcomes."""
    deadline = time.monotonic() + 20
    while True:
        totals = await turn_totals(bots)
        if all(totals.get(k, 0.0) >= v for k, v in expected.items()):
            return totals
        if time.monotonic() > deadline:
            raise AssertionError(f"turns so far: {totals}; expected at least {expected}")
        await asyncio.sleep(0.05)
