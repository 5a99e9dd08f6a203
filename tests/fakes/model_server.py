"""Emulator (being written)."""
