"""The core stays platform-free: it never imports a platform SDK or an HTTP client."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"slack_bolt", "slack_sdk", "discord", "httpx", "aiohttp"}
CORE = Path(__file__).resolve().parent.parent / "core"


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_imports_no_platform_sdk() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    leaks = {str(f.relative_to(CORE)): imported_roots(f) & FORBIDDEN for f in files}
    assert {f: r for f, r in leaks.items() if r} == {}


def test_the_boundary_check_catches_a_leak(tmp_path: Path) -> None:
    bad = tmp_path / "leaky.py"
    bad.write_text("from slack_sdk.web import WebClient\nimport discord.ext\n")
    assert imported_roots(bad) & FORBIDDEN == {"slack_sdk", "discord"}
