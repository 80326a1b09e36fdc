"""Throwaway plugin distributions written into a temporary directory (no pip, no network).

`write_distribution` writes a module and a ``.dist-info`` directory next to it, which is
all `importlib.metadata` needs to find an installed distribution and its entry points
once the directory is on ``sys.path`` (or ``PYTHONPATH`` for a subprocess).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

#: The good test plugin: registers the ``fake`` transport (whose target class does not
#: exist, so resolving it would fail) and records every delivered message.
TESTPLUGIN_SOURCE = """
import dispatchio

delivered = []


@dispatchio.hookimpl
def dispatchio_register_transports(register):
    register("fake", "dispatchio_testplugin:FakeTransport")


@dispatchio.hookimpl
def dispatchio_message_delivered(message, listener):
    delivered.append((message, listener))
"""

#: A plugin module that cannot be imported.
BROKENPLUGIN_SOURCE = """
raise ImportError("dispatchio_brokenplugin needs a library that is not installed")
"""

#: A plugin implementing a hook that does not exist (``mesage`` is misspelt).
MISSPELTPLUGIN_SOURCE = """
import dispatchio


@dispatchio.hookimpl
def dispatchio_mesage_sent(message):
    pass
"""

#: The modules the distributions below create; tests drop them from ``sys.modules`` after.
MODULE_NAMES = ("dispatchio_testplugin", "dispatchio_brokenplugin", "dispatchio_misspeltplugin")


def write_distribution(
    root: Path,
    *,
    name: str,
    version: str,
    entry_points: dict[str, str],
    modules: dict[str, str],
) -> None:
    """Write an "installed" distribution into ``root``.

    Args:
        root: The directory that goes on ``sys.path``.
        name: The distribution name, e.g. ``"dispatchio-testplugin"``.
        version: Its version.
        entry_points: Entry-point name to target, all in the ``dispatchio`` group.
        modules: Module name to source, written as ``<root>/<module>.py``.
    """
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[dispatchio]\n{lines}", encoding="utf-8")


def write_testplugin(root: Path) -> None:
    """Write ``dispatchio-testplugin 1.2.3`` (entry point ``testplugin``) into ``root``."""
    write_distribution(
        root,
        name="dispatchio-testplugin",
        version="1.2.3",
        entry_points={"testplugin": "dispatchio_testplugin"},
        modules={"dispatchio_testplugin": TESTPLUGIN_SOURCE},
    )


def write_brokenplugin(root: Path) -> None:
    """Write ``dispatchio-brokenplugin 0.1`` whose module raises ImportError."""
    write_distribution(
        root,
        name="dispatchio-brokenplugin",
        version="0.1",
        entry_points={"brokenplugin": "dispatchio_brokenplugin"},
        modules={"dispatchio_brokenplugin": BROKENPLUGIN_SOURCE},
    )


def write_misspeltplugin(root: Path) -> None:
    """Write ``dispatchio-misspeltplugin 0.1`` implementing the misspelt hook."""
    write_distribution(
        root,
        name="dispatchio-misspeltplugin",
        version="0.1",
        entry_points={"misspeltplugin": "dispatchio_misspeltplugin"},
        modules={"dispatchio_misspeltplugin": MISSPELTPLUGIN_SOURCE},
    )


#: What ``describe()`` and ``dispatchio plugins`` report for the good plugin's hooks.
TESTPLUGIN_HOOKS = ("dispatchio_message_delivered", "dispatchio_register_transports")
