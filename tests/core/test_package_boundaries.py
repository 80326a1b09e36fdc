"""Packages meet only through public modules: none imports another package's ``_`` modules.

Plugins (``dispatchio_tcp``, ``dispatchio_http``, ...) may import ``dispatchio``,
``dispatchio.transport``, ``dispatchio.testing`` and ``dispatchio.hookspecs``, and the
core none of a plugin's private modules. Checked on the sources (ast), so a lazy import inside a
function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2] / "packages"


def _sources() -> list[tuple[str, Path]]:
    """``(top-level import name, source file)`` of every package in the repository."""
    found = []
    for top in sorted(PACKAGES.glob("*/src/*/__init__.py")):
        for path in sorted(top.parent.rglob("*.py")):
            found.append((top.parent.name, path))
    return found


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def crossings(own: str, source: str) -> list[str]:
    """The imports in ``source`` (of package ``own``) that reach another package's privates."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from pkg import _mod`` names a private module (or a private name) too.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != own and _private(name):
                bad.append(f"line {node.lineno}: {name}")
    return bad


def test_every_package_is_found() -> None:
    tops = {own for own, _ in _sources()}
    assert {"dispatchio", "dispatchio_tcp"} <= tops


@pytest.mark.parametrize(
    ("own", "source", "expected"),
    [
        ("dispatchio_tcp", "from dispatchio._errors import TransportError", 1),
        ("dispatchio_tcp", "import dispatchio._wire", 1),
        ("dispatchio_tcp", "from dispatchio import _wire", 1),
        ("dispatchio_tcp", "def f():\n    from dispatchio._message import ListenerId", 1),
        ("dispatchio", "from dispatchio_tcp._framing import HEADER", 1),
        ("dispatchio_tcp", "from dispatchio_tcp._framing import HEADER", 0),
        ("dispatchio_tcp", "from dispatchio import TransportError, ListenerId", 0),
        ("dispatchio_tcp", "from dispatchio.transport import Transport", 0),
        ("dispatchio_tcp", "from __future__ import annotations\nfrom . import _framing", 0),
    ],
)
def test_the_check_finds_what_it_should(own: str, source: str, expected: int) -> None:
    assert len(crossings(own, source)) == expected


def test_no_package_imports_another_packages_private_modules() -> None:
    bad = {
        f"{path.relative_to(PACKAGES)}: {crossing}"
        for own, path in _sources()
        for crossing in crossings(own, path.read_text(encoding="utf-8"))
    }
    assert sorted(bad) == []
