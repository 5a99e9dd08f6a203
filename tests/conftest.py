"""Shared fixtures: the emulators live in tests/fakes/ and are registered here as plugins."""

pytest_plugins = [
    "tests.fakes.model_server",
    "tests.fakes.slack_server",
    "tests.fakes.discord_server",
    "tests.fakes.chat_port",
    "tests.fakes.log_capture",
    "tests.fakes.cli_runner",
]
