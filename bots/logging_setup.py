"""Logging for operators: text or JSON lines, with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

# Token shapes that must never reach a log even if some library prints them.
_TOKEN_SHAPES = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|sk-[A-Za-z0-9_-]{12,}"
    r"|Bearer\s+[A-Za-z0-9._~+/=-]{8,}|Bot\s+[A-Za-z0-9._-]{20,})"
)


class SecretScrubber(logging.Filter):
    """Replaces known secret values and token-shaped strings with [redacted]."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_SHAPES.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.scrub(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# What discord.py's Client logs at start-up when its optional voice libraries are missing.
# Threadwise never joins a voice channel, so these only alarm operators.
_VOICE_LIBRARY_MISSING = re.compile(r"(PyNaCl|davey) is not installed, voice will NOT be supported")


class VoiceSupportWarnings(logging.Filter):
    """Drops exactly discord.py's "PyNaCl/davey is not installed, voice will NOT be
    supported" warnings; every other discord.py record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "discord.client"
                    and _VOICE_LIBRARY_MISSING.fullmatch(record.getMessage()))


def quiet_voice_warnings() -> None:
    """Install VoiceSupportWarnings on the discord.client logger (once)."""
    logger = logging.getLogger("discord.client")
    if not any(isinstance(f, VoiceSupportWarnings) for f in logger.filters):
        logger.addFilter(VoiceSupportWarnings())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SecretScrubber(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries log full request bodies at DEBUG; keep them at INFO or above.
    for noisy in ("slack_sdk", "slack_bolt", "discord", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
    # HTTP clients log a line per request at INFO ("HTTP Request: POST …"), which
    # floods `threadwise chat` mid-answer and the bots' logs: only at LOG_LEVEL=DEBUG.
    http_level = logging.INFO if level == "DEBUG" else logging.WARNING
    for chatty in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        logging.getLogger(chatty).setLevel(max(http_level, logging.getLevelName(level)))
