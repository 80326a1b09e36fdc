"""The mesh closes the link of a peer it declares gone, so a paused peer can come back."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from dispatchio import Message, MessageDispatcher, make_plugin_manager
from tests.core._memory_transport import MemoryTransport
from tests.core.test_mesh import echo, mesh

pytestmark = pytest.mark.anyio

# Fast heartbeats: a silent peer is declared gone after 0.15 s.
FAST = {"heartbeat_interval": 0.05, "heartbeat_tolerance": 3}


def _transport(dispatcher: MessageDispatcher) -> MemoryTransport:
    transport = dispatcher._mesh.transports["mem"]  # type: ignore[union-attr]
    assert isinstance(transport, MemoryTransport)
    return transport


async def _until(dispatcher: MessageDispatcher, condition: Callable[[], object]) -> None:
    """Wait (bounded by the caller) until ``condition()`` holds, checked on every change
    of the directory (a peer declared gone changes it, and is disconnected in the same
    step)."""
    while not condition():
        await dispatcher._mesh.changed.wait()  # type: ignore[union-attr]


async def test_a_peer_declared_gone_by_the_detector_is_disconnected() -> None:
    with anyio.fail_after(5):
        async with mesh(2, **FAST) as (a, b):
            _transport(b).muted = True  # alive, linked, silent
            await _until(a, lambda: _transport(a).disconnects)
            _transport(b).muted = False
            first = _transport(a).disconnects[0]
    assert first == ("p1", "no frame for 0.15 s")


async def test_a_silent_peer_that_speaks_again_is_served_again() -> None:
    with anyio.fail_after(5):
        async with mesh(2, **FAST) as (a, b):
            echo(b, "bob")
            await a.wait_for_listener("bob", timeout=5)
            _transport(b).muted = True
            await _until(a, lambda: _transport(a).disconnects)
            _transport(b).muted = False
            await a.wait_for_listener("bob", timeout=5)
            reply = await a.request(Message("ping", "again", destination="bob"))
    assert reply.content == "bob:again"


async def test_a_goodbye_closes_the_link_too() -> None:
    with anyio.fail_after(5):
        async with mesh(1) as (a,):
            b = MessageDispatcher(
                "p1",
                plugins=make_plugin_manager(load_entrypoints=False),
                listen=["mem://goodbye-p1"],
                connect=a.listen_urls,
                transports=[MemoryTransport()],
            )
            async with b:
                await a.wait_for_peer("p1", timeout=5)
            await _until(a, lambda: "p1" not in a.peers)
            disconnects = [process for process, _ in _transport(a).disconnects]
    assert disconnects == ["p1"]
