"""Running `threadwise` as a real process, as an operator does (fixture `cli`)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.fakes.log_capture import LogHygiene

Runner = Callable[..., Awaitable[tuple[int, str, str]]]

ROOT = Path(__file__).resolve().parent.parent.parent


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any threadwise setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODEL_", "SLACK_", "DISCORD_", "GMI_", "OPENAI_", "DATABASE_",
                                "LOG_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


async def start(args: list[str], env: dict[str, str],
                cwd: Path | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", *args, env=env, cwd=cwd or ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, stdin: bytes | None = None,
                 within_s: float = 60) -> tuple[int, str, str]:
    """Its exit code and output; a process still running after `within_s` is killed."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=within_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"still running after {within_s} s; stderr:\n{err.decode()[-2000:]}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run(args: list[str], env: dict[str, str], stdin: bytes | None = None,
              cwd: Path | None = None, within_s: float = 60) -> tuple[int, str, str]:
    return await finish(await start(args, env, cwd), stdin, within_s)


@pytest.fixture
def cli(log_hygiene: LogHygiene) -> Runner:
    """Run `threadwise` and hand its output to the suite's secret scanner."""

    async def call(args: list[str], env: dict[str, str], stdin: bytes | None = None,
                   cwd: Path | None = None, within_s: float = 60) -> tuple[int, str, str]:
        code, out, err = await run(args, env, stdin, cwd, within_s)
        log_hygiene.check_output(out + err, f"threadwise {' '.join(args)[:40]}")
        return code, out, err

    return call
