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


async def run(args: list[str], env: dict[str, str], stdin: bytes | None = None,
              cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", *args, env=env, cwd=cwd or ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def cli(log_hygiene: LogHygiene) -> Runner:
    """Run `threadwise` and hand its output to the suite's secret scanner."""

    async def call(args: list[str], env: dict[str, str], stdin: bytes | None = None,
                   cwd: Path | None = None) -> tuple[int, str, str]:
        code, out, err = await run(args, env, stdin, cwd)
        log_hygiene.check_output(out + err, f"threadwise {' '.join(args)[:40]}")
        return code, out, err

    return call
