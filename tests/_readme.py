"""The Python blocks of README.md, for the tests that run them as written.

A block is a ```python fence. The line just before the fence may carry a marker, an
HTML comment the rendered README does not show:

* ``<!-- fragment: <reason> -->``: a fragment, not meant to run on its own; the reason
  is required.
* ``<!-- process: <role> -->``: one of several programs that run at the same time as
  separate processes (``server``, ``client``); the test of the transport they need runs
  them together.

Any other block runs on its own, in a fresh interpreter. A ``print(...)`` line may end
with ``  # <text>``: ``<text>`` is the line it prints, and the test compares the
program's output with those lines.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"^<!--\s*(?P<kind>[\w-]+)\s*(?::\s*(?P<arg>.*?))?\s*-->$")
_PRINT = re.compile(r"^\s*print\(.*\)  # (?P<expected>.*)$")

#: Seconds a block may run; far beyond what any of them needs, so only a hang trips it.
RUN_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Block:
    """One ```python block of the README."""

    line: int
    """Line number of the opening fence (1-based)."""
    code: str
    marker: str | None
    """The marker's kind (``fragment``, ``process``), or None for a block that runs alone."""
    argument: str
    """What follows the marker's colon: a fragment's reason, a process's role."""

    @property
    def name(self) -> str:
        """A test ID: ``README.md:<line>``."""
        return f"README.md:{self.line}"

    @property
    def expected_output(self) -> list[str]:
        """The lines the block says it prints (``print(...)  # <text>``), in order."""
        return [match["expected"] for match in map(_PRINT.match, self.code.splitlines()) if match]


def blocks(text: str) -> list[Block]:
    """Every ```python block of ``text`` (Markdown), with the marker on the line before it."""
    found = []
    for fence in _FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        before = text[: fence.start()].rstrip("\n").rpartition("\n")[2].strip()
        marker = _MARKER.match(before)
        found.append(
            Block(
                line=line,
                code=fence.group(1),
                marker=marker["kind"] if marker else None,
                argument=(marker["arg"] or "") if marker else "",
            )
        )
    return found


def readme_blocks() -> list[Block]:
    """Every ```python block of the repository's README.md."""
    return blocks(README.read_text(encoding="utf-8"))


def write_program(
    block: Block, folder: Path, replacements: Mapping[str, str] | None = None
) -> Path:
    """Write ``block`` as a program in ``folder`` (with ``replacements`` applied); its path."""
    code = block.code
    for old, new in (replacements or {}).items():
        assert old in code, f"{block.name}: {old!r} not in the block"
        code = code.replace(old, new)
    path = folder / f"readme_{block.line}.py"
    path.write_text(code, encoding="utf-8")
    return path


def python_command(program: Path) -> list[str]:
    """The command running ``program`` with warnings as errors and unbuffered output."""
    return [sys.executable, "-W", "error", "-u", str(program)]


def environment() -> dict[str, str]:
    """The environment of a README program: this one, with UTF-8 output."""
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``block`` alone in a fresh interpreter, in ``folder``; assert it exits 0."""
    program = write_program(block, folder)
    completed = subprocess.run(
        python_command(program),
        cwd=folder,
        capture_output=True,
        encoding="utf-8",
        env=environment(),
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, failure(block, completed.stdout, completed.stderr)
    return completed


def failure(block: Block, stdout: str, stderr: str) -> str:
    """A report of a README block that did not do what it says."""
    return f"{block.name} did not run as written\nstdout:\n{stdout}\nstderr:\n{stderr}"


def assert_prints_what_it_says(block: Block, stdout: str, stderr: str = "") -> None:
    """The block's output lines are exactly its ``print(...)  # <text>`` comments."""
    assert stdout.splitlines() == block.expected_output, failure(block, stdout, stderr)
