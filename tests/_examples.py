"""Running the programs in examples/ for the tests of every package."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

RANKS = ("2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K", "A")
SUITS = ("♣", "♦", "♥", "♠")
VALID_CARDS = frozenset(rank + suit for rank in RANKS for suit in SUITS)


@functools.cache
def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>`` with ``args``; assert it exits 0; return its stdout."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{name} exited {completed.returncode}\n"
        f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    )
    return completed.stdout
