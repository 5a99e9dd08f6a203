"""`threadwise check` as an operator reads it: what is wrong, and how to fix it."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.cli_runner import Runner, clean_env
from tests.fakes.model_server import FakeModelServer


async def test_check_needs_no_key_for_a_loopback_model_server(
    cli: Runner, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_BASE_URL=model_server.base_url)  # no key at all
    code, out, err = await cli(["check"], env)
    assert code == 0, out + err
    assert "[ok  ] model" in out and "no key" not in out
    assert model_server.requests, "check sent its tiny request without a key"
