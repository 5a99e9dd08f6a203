"""`pip install .` works with the build tools pyproject.toml asks for, and ships a licence."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_an_spdx_license_string_asks_for_a_setuptools_that_reads_it() -> None:
    # setuptools < 77 rejects `license = "MIT"` ("project.license must be valid exactly
    # by one definition"), so an older one allowed by the pin would fail the install.
    assert isinstance(PYPROJECT["project"]["license"], str)
    [pin] = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", pin)
    assert found is not None and int(found.group(1)) >= 77, pin


def test_the_mit_licence_text_is_shipped() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and PYPROJECT["project"]["license"] == "MIT"
    assert "Copyright (c) 2026 the threadwise authors" in text
