"""The conformance suite as a third party meets it: what it demands of a subclass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_MODULE = """
import pytest
from dispatchio.testing import TransportConformance


class TestSomeTransport(TransportConformance):
    @pytest.fixture
    def transport_url(self) -> str:
        return "some://127.0.0.1:0"
{extra}
"""


_COLLECT = ("--collect-only", "-m", "anyio")


def _run(tmp_path: Path, extra: str, *selection: str) -> str:
    """Run the suite's tests named ``selection`` in a fresh pytest; return its report."""
    module = tmp_path / "test_some_transport.py"
    module.write_text(_MODULE.format(extra=extra))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(module), "-p", "no:cacheprovider", "-rs", "-q"]
        + [arg for name in selection for arg in ("-k", name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


def test_a_transport_without_hostile_input_fails_the_malformed_input_property(
    tmp_path: Path,
) -> None:
    report = _run(tmp_path, "", "test_malformed_input")
    outcome = report.splitlines()[-1]
    assert " failed" in outcome
    assert "passed" not in outcome
    assert "TestSomeTransport must override send_hostile_input(url)" in report


def test_a_transport_that_has_no_hostile_input_gets_a_reported_skip_with_its_reason(
    tmp_path: Path,
) -> None:
    extra = '    no_hostile_input = "the broker validates every record"\n'
    report = _run(tmp_path, extra, "test_malformed_input")
    outcome = report.splitlines()[-1]
    assert " skipped" in outcome
    assert "passed" not in outcome
    assert "failed" not in outcome
    assert "supplies no malformed input: the broker validates every record" in report


@pytest.mark.parametrize("name", ["test_request_reply", "test_frozen_peer_that_thaws"])
def test_every_property_is_collected_as_an_anyio_test(tmp_path: Path, name: str) -> None:
    module = tmp_path / "test_some_transport.py"
    module.write_text(_MODULE.format(extra=""))
    command = [sys.executable, "-m", "pytest", str(module), "-p", "no:cacheprovider", "-q"]
    result = subprocess.run(
        [*command, *_COLLECT, "-k", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"TestSomeTransport::{name}" in result.stdout
