"""The transport conformance suite, run against dispatchio-tcp on loopback."""

from __future__ import annotations

import pytest

from dispatchio.testing import TransportConformance
from tests.tcp._tcp_support import send_hostile_input


class TestTcpConformance(TransportConformance):
    """Every property of `TransportConformance`, over ``tcp://``."""

    @pytest.fixture
    def transport_url(self) -> str:
        return "tcp://127.0.0.1:0"

    async def send_hostile_input(self, url: str) -> None:
        await send_hostile_input(url)
