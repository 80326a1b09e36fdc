"""The transport conformance suite, run against dispatchio-tcp on loopback."""

from __future__ import annotations

import pytest

from dispatchio.testing import TransportConformance


class TestTcpConformance(TransportConformance):
    """Every property of `TransportConformance`, over ``tcp://``."""

    @pytest.fixture
    def transport_url(self) -> str:
        return "tcp://127.0.0.1:0"
