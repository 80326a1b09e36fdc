"""The README's FaultProxy example runs as written and prints what it says.

It needs the TCP transport, so it is marked as a fragment for the core's README test
(which installs the core alone) and run here, where dispatchio-tcp is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_PRINT = re.compile(r"^\s*print\(.*\)  # (?P<expected>.*)$")


def fault_proxy_example() -> str:
    blocks: list[str] = _BLOCK.findall(README.read_text("utf-8"))
    (code,) = [block for block in blocks if "FaultProxy(" in block]
    return code


def test_the_readme_fault_proxy_example_runs_as_written(tmp_path: Path) -> None:
    code = fault_proxy_example()
    program = tmp_path / "fault_proxy_example.py"
    program.write_text(code, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(program)],
        capture_output=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=60,
        check=False,
    )
    expected = [m["expected"] for m in map(_PRINT.match, code.splitlines()) if m]
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == expected, completed.stderr
