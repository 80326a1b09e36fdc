"""Tools for testing transports: the conformance suite every transport must pass, and
`RecordingHandler`, a `TransportHandler` that records what a transport reports.

A transport's test module subclasses `TransportConformance`, gives it one fixture,
``transport_url``, and its own malformed input (or a reason it has none, see
``TransportConformance.no_hostile_input``)::

    import pytest
    from dispatchio.testing import TransportConformance

    class TestMyTransport(TransportConformance):
        @pytest.fixture
        def transport_url(self) -> str:
            return "my://127.0.0.1:0"

        async def send_hostile_input(self, url: str) -> None:
            ...  # random bytes, a bad handshake, an oversized frame, in my wire format

To test a transport below the dispatcher, serve it with a `RecordingHandler` and wait
on what it records: ``await handler.wait_up("b")``, ``await handler.wait_frames("b", 3)``.
`FaultProxy` puts latency, bandwidth limits, blackholes and resets between processes.

This package needs pytest and anyio's pytest plugin; ``import dispatchio`` never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatchio.testing._faults import FaultProxy

if TYPE_CHECKING:
    from dispatchio.testing._conformance import TransportConformance
    from dispatchio.testing._recording import RecordingHandler

__all__ = ["FaultProxy", "RecordingHandler", "TransportConformance"]


def __getattr__(name: str) -> Any:
    # Lazy, so the child processes (``python -m dispatchio.testing._child``) start without
    # importing pytest.
    if name == "TransportConformance":
        from dispatchio.testing._conformance import TransportConformance

        return TransportConformance
    if name == "RecordingHandler":
        from dispatchio.testing._recording import RecordingHandler

        return RecordingHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
