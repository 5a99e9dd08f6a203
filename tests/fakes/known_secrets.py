"""Every credential the test suite hands to threadwise, in one place.

The emulators and harnesses take their tokens from here, and the log-hygiene
plugin (tests/fakes/log_capture.py) fails any test whose logs contain one of them.
Named `known_secrets` rather than `secrets` so it never shadows the standard module.
"""

from __future__ import annotations

import re

MODEL_API_KEY = "test-key"
SLACK_BOT_TOKEN = "xoxb-test-token"
SLACK_APP_TOKEN = "xapp-test-token"
SLACK_SIGNING_SECRET = "test-signing-secret"
DISCORD_TOKEN = "test-discord-token"

# What each secret is, for failure messages (the value itself is never printed).
SECRETS: dict[str, str] = {
    MODEL_API_KEY: "the model API key",
    SLACK_BOT_TOKEN: "the Slack bot token",
    SLACK_APP_TOKEN: "the Slack app token",
    SLACK_SIGNING_SECRET: "the Slack signing secret",
    DISCORD_TOKEN: "the Discord bot token",
}

# Credentials that tests make up on the spot (a revoked Slack token, Discord
# interaction tokens minted by the emulator) are matched by shape.
SECRET_SHAPES: dict[str, re.Pattern[str]] = {
    "a Slack token": re.compile(r"\bx(?:ox[abposr]|app)-[A-Za-z0-9-]{4,}"),
    "a Discord interaction token": re.compile(r"\bitoken-\d+"),
    "an Authorization header value": re.compile(
        r"\bBearer\s+[A-Za-z0-9._~+/=-]{6,}|Authorization['\"]?\s*[:=]\s*['\"]?Bot\s+\S{6,}"
    ),
}
