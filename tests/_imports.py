"""Checking what importing something drags in, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable


def loaded_after(statements: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` are in ``sys.modules`` once a fresh interpreter has run
    ``statements`` (sorted; raises `subprocess.CalledProcessError` if they fail)."""
    code = (
        f"{statements}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in {sorted(modules)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded
