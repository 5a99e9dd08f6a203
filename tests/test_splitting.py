"""Splitting a long reply: every part fits, renders on its own and carries new text."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import core.splitting
import core.streaming
from core.splitting import Cut, open_fence, split_all, take_part
from tests.fakeclock import FakeClock
from tests.test_streaming import RecordingPort, make

LONG_INFO = "```" + "y " * 1200 + "\ncode\n```"  # a paragraph where the language goes
LONG_LINE = "```" + "x" * 2500  # a fence opened on a line longer than a message


@pytest.fixture(autouse=True)
def bounded_cuts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut that takes no new text repeats forever without awaiting, which freezes the
    event loop (and this test run): fail instead after far more cuts than needed."""
    cuts = itertools.count()

    def counted(source: str, limit: int, carry: str = "") -> Cut:
        if next(cuts) >= 50:
            raise AssertionError("over 50 parts: the splitter makes no progress")
        return take_part(source, limit, carry)

    monkeypatch.setattr(core.splitting, "take_part", counted)
    monkeypatch.setattr(core.streaming, "take_part", counted)


@pytest.mark.parametrize("text", [LONG_INFO, LONG_LINE], ids=["long-info", "long-line"])
def test_a_code_block_opened_on_a_very_long_line_takes_two_messages(text: str) -> None:
    """It used to be repeated at the top of every part (414 parts) or never cut at all."""
    parts = split_all(text, 2000)
    assert len(parts) == 2
    assert all(len(p) <= 2000 for p in parts)
    assert open_fence(parts[0]) is None, "the first part closes its code block"
    assert parts[1].startswith("```"), "the second part reopens it"
    first, (reopened, second) = parts[0].removesuffix("\n```"), parts[1].split("\n", 1)
    assert len(reopened) <= 200, "a reopened fence takes a small share of the part"
    assert "".join((first + second).split()) == "".join(text.split()), "nothing lost"


async def test_a_fence_line_longer_than_a_message_does_not_freeze_the_reply() -> None:
    clock = FakeClock()
    port = RecordingPort(clock, max_chars=2000)
    streamer = make(port, clock)
    async with asyncio.timeout(10):
        streamer.push(LONG_LINE)  # one model delta; push() used to spin forever
        ids = await streamer.finish()
    assert len(ids) == 2
    assert "".join(port.messages[m] for m in ids).count("x") == 2500


async def test_a_growing_code_block_is_never_shown_longer_than_a_message() -> None:
    """Closing the open fence of a live part used to add 4 characters past the limit:
    Discord refused the post ("2000 or fewer in length") and the reply failed."""
    clock = FakeClock()
    port = RecordingPort(clock, max_chars=2000)
    streamer = make(port, clock)
    code = "```python\n" + "x = 1\n" * 331 + "y\n"  # 1,998 characters, fence still open
    streamer.push(code)
    await clock.sleep(10.0)  # the model pauses (a tool call): the live part is shown
    streamer.push("```\nDone.")
    ids = await streamer.finish()
    assert streamer.failed is None  # RecordingPort refuses a write over max_chars
    shown = "".join(port.messages[m] for m in ids)
    assert shown.count("x = 1") == 331 and shown.endswith("Done.")
