"""The ``dispatchio`` command: ``dispatchio plugins`` lists the installed plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatchio._cli import main
from tests.core._plugin_dists import TESTPLUGIN_HOOKS, write_testplugin


def run_cli(*args: str, pythonpath: Path | None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dispatchio._cli`` with ``PYTHONPATH`` set to ``pythonpath`` (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "dispatchio._cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_plugins_command_lists_an_installed_plugin(tmp_path: Path) -> None:
    write_testplugin(tmp_path)
    result = run_cli("plugins", pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Plugins installed in this environment may be listed around it.
    start = lines.index("testplugin  [dispatchio-testplugin 1.2.3]")
    assert lines[start : start + 3] == [
        "testplugin  [dispatchio-testplugin 1.2.3]",
        "  transports: fake",
        f"  hooks:      {', '.join(TESTPLUGIN_HOOKS)}",
    ]


def test_plugins_command_without_plugins_says_so(
    site_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins"]) == 0  # site_dir is empty and hides installed plugins
    assert capsys.readouterr().out == "no dispatchio plugins installed\n"


def test_main_plugins_lists_an_installed_plugin(
    site_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_testplugin(site_dir)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "testplugin  [dispatchio-testplugin 1.2.3]" in out
    assert "  transports: fake" in out
    for hook in TESTPLUGIN_HOOKS:
        assert hook in out


def test_main_without_subcommand_exits_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required: command" in capsys.readouterr().err


def test_main_with_unknown_subcommand_exits_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_missing_subcommand_exits_with_status_2_from_the_command_line() -> None:
    result = run_cli(pythonpath=None)
    assert result.returncode == 2
    assert "usage: dispatchio" in result.stderr
