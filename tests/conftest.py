"""Shared fixtures: the emulators live in tests/fakes/ and are registered here."""

pytest_plugins: list[str] = []
