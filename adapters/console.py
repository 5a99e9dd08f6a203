"""Terminal adapter: `threadwise chat`, the same core service and history in a shell."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

from core.ports import FileRefused, WriteLimits
from core.service import ConversationService
from core.types import FileRef, Inbound, ThreadKey

HELP = "Commands: /image PATH (attach an image, PDF or text file), /reset, /help, /quit"


class ConsolePort:
    """Prints the reply as it streams; a terminal cannot edit, so each write prints the new tail."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._shown: dict[str, str] = {}
        self._count = 0

    def limits(self, key: ThreadKey) -> WriteLimits:
        return WriteLimits(
            max_chars=1_000_000, min_edit_gap_s=0.03, bucket="console", bucket_rate=100.0,
            bucket_burst=100,
        )

    async def post(
        self, key: ThreadKey, markdown: str, *, reply_to: str | None = None, final: bool = False,
        nonce: str | None = None,
    ) -> str:
        self._count += 1
        message_id = f"c{self._count}"
        self._shown[message_id] = ""
        self._write(message_id, markdown)
        return message_id

    async def edit(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        self._write(message_id, markdown)

    async def finish(self, key: ThreadKey, message_id: str, markdown: str) -> None:
        self._write(message_id, markdown)
        self._out.write("\n")
        self._out.flush()

    async def set_status(self, key: ThreadKey, status: str | None) -> None:
        if status:
            self._out.write(f"\x1b[2m(threadwise {status})\x1b[0m\r" if self._out.isatty() else "")
            self._out.flush()

    async def fetch_file(self, ref: FileRef, *, max_bytes: int) -> bytes:
        try:
            data = await asyncio.to_thread(_read_capped, Path(ref.url), max_bytes)
        except OSError as exc:
            raise FileRefused(ref.name, f"cannot be read ({exc.strerror})") from None
        if data is None:
            raise FileRefused(ref.name, f"is larger than the {max_bytes:,}-byte limit")
        return data

    def _write(self, message_id: str, markdown: str) -> None:
        shown = self._shown.get(message_id, "")
        # Mid-stream views may carry a temporary closing fence; print only true growth.
        same = 0
        for a, b in zip(shown, markdown, strict=False):
            if a != b:
                break
            same += 1
        self._out.write(markdown[same:])
        self._out.flush()
        self._shown[message_id] = markdown


def _read_capped(path: Path, max_bytes: int) -> bytes | None:
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def _looks_like_command(line: str) -> bool:
    """'/bogus' or '/bogus args' is a command; '/usr/bin is…' (a path) is a message."""
    word = line.split()[0]
    return word.startswith("/") and len(word) > 1 and "/" not in word[1:]


async def _read_line(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


async def run_console(service: ConversationService, *, session: str = "default",
                      out: TextIO = sys.stdout) -> None:
    key = ThreadKey("console", "local", "terminal", session)
    port = ConsolePort(out)
    pending: list[FileRef] = []
    counter = 0
    out.write(f"threadwise chat — model {service.model.model}. {HELP}\n")
    while True:
        line = await _read_line("you> ")
        if line is None or line.strip() in ("/quit", "/exit"):
            out.write("\n")
            return
        line = line.strip()
        if not line:
            continue
        if line == "/help":
            out.write(HELP + "\n")
            continue
        if line == "/reset":
            await service.reset(key)
            pending.clear()
            out.write("(history cleared: the next message starts a new conversation)\n")
            continue
        if line.split()[0] == "/image":
            path = line[len("/image"):].strip()
            if not path:
                out.write("usage: /image PATH\n")
                continue
            file = await asyncio.to_thread(Path(path).expanduser)
            if not await asyncio.to_thread(file.is_file):
                out.write(f"(no such file: {file})\n")
                continue
            pending.append(FileRef(id=str(file), name=file.name, url=str(file)))
            out.write(f"(attached {file.name}; it goes with your next message)\n")
            continue
        if _looks_like_command(line):  # a typo must not become a question to the model
            out.write(f"unknown command {line.split()[0]}, try /help\n")
            continue
        counter += 1
        inbound = Inbound(
            key=key, message_id=f"{os.getpid()}-{counter}-{asyncio.get_running_loop().time()}",
            author_id=os.environ.get("USER", "you"), author_name=os.environ.get("USER", "you"),
            text=line, files=tuple(pending),
        )
        pending.clear()
        out.write("threadwise> ")
        out.flush()
        await service.handle(inbound, port)
