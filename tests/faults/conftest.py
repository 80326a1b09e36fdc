"""Fixtures of the fault tests: the transport under test and the figures they report.

Every test that measures something records its figures with the ``figures`` fixture.
At the end of the run they are printed in a "fault-test figures" section of the
terminal summary (with or without ``-s``) and written as JSON to the file named by
``DISPATCHIO_FIGURES``, or to ``fault-figures.json`` in pytest's base temporary folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults._harness import CASES, TransportCase

_FIGURES: list[dict[str, Any]] = []
_FIGURES_PATH: list[Path] = []

Figures = Callable[..., None]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test taking ``transport`` runs once per transport in `CASES` and backend it runs
    # on. As a mark, added first: a parametrize mark takes precedence over the params of
    # the ``anyio_backend`` fixture (pytest's own hook applies it right after this one).
    if "transport" in metafunc.fixturenames:
        pairs = [(backend, name) for name, case in CASES.items() for backend in case.backends]
        metafunc.definition.add_marker(
            pytest.mark.parametrize(
                ("anyio_backend", "transport"),
                pairs,
                ids=[f"{backend}-{name}" for backend, name in pairs],
                indirect=True,
            )
        )


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> TransportCase:
    """The transport under test (parametrised by `pytest_generate_tests`)."""
    return CASES[str(request.param)]


@pytest.fixture
def figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Figures:
    """``figures(key=value, ...)`` records measured figures under the test's ID."""
    if not _FIGURES_PATH:
        default = tmp_path_factory.getbasetemp() / "fault-figures.json"
        _FIGURES_PATH.append(Path(os.environ.get("DISPATCHIO_FIGURES", default)))

    def record(**values: Any) -> None:
        _FIGURES.append({"test": request.node.nodeid, **values})
        _FIGURES_PATH[0].write_text(json.dumps(_FIGURES, indent=1))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault-test figures")
    for entry in _FIGURES:
        name = entry["test"].rpartition("::")[2]
        values = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "test")
        terminalreporter.write_line(f"{name}: {values}")
    terminalreporter.write_line(f"(as JSON: {_FIGURES_PATH[0]})")
