"""ReplyStreamer when the platform keeps failing: each message is posted once, and a
reply the platform will not take ends instead of retrying forever (virtual clock)."""

from __future__ import annotations

from dataclasses import dataclass

from core.types import ThreadKey
from tests.fakeclock import FakeClock
from tests.test_streaming import RecordingPort, make


@dataclass
class FlakyPort(RecordingPort):
    """Posts take a while (the model keeps streaming meanwhile); closing writes fail
    `finish_failures` times, like a brief 503."""

    finish_failures: int = 0

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False
    ) -> str:
        mid = await super().post(key, markdown, reply_to=reply_to, final=final)
        await self.clock.sleep(0.5)
        return mid

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        if self.finish_failures:
            self.finish_failures -= 1
            raise RuntimeError("chat.update: internal_error (HTTP 503)")
        await super().finish(key, message_id, markdown)


async def test_a_failed_closing_write_after_a_post_does_not_post_the_reply_twice() -> None:
    clock = FakeClock()
    port = FlakyPort(clock, finish_failures=1)
    streamer = make(port, clock)
    streamer.push("Hello, ")
    await clock.sleep(0.1)  # the first post is in flight
    streamer.push("world.")  # and the model finishes meanwhile
    ids = await streamer.finish()
    assert port.messages == {"m1": "Hello, world."}
    assert ids == ["m1"]
    assert [kind for _, kind, _, _ in port.writes] == ["post", "finish"]
