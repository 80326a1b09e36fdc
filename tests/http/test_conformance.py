"""The transport conformance suite, run against dispatchio-http on loopback (asyncio only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from dispatchio.testing import TransportConformance
from tests.http._hostile import send_hostile_http

#: A short header timeout, so the suite's slowloris is dropped within its linger time.
HEADER_TIMEOUT = 1.0
MAX_FRAME_SIZE = 1 << 20
#: Seconds beyond the header timeout that the slowloris is given to be dropped.
LINGER = 1.0


class TestHttpConformance(TransportConformance):
    """Every property of `TransportConformance`, over ``http://``."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # aiohttp has no trio support

    @pytest.fixture
    def transport_url(self) -> str:
        return "http://127.0.0.1:0"

    @pytest.fixture
    def transport_options(self) -> Mapping[str, Mapping[str, Any]]:
        return {"http": {"header_timeout": HEADER_TIMEOUT}}

    async def send_hostile_input(self, url: str) -> None:
        """Hostile HTTP: random bytes and bodies, a terabyte Content-Length, a body cut
        off half way, a chunked body over the cap, a slowloris, and garbage on peer links."""
        await send_hostile_http(url, max_frame_size=MAX_FRAME_SIZE, linger=HEADER_TIMEOUT + LINGER)
