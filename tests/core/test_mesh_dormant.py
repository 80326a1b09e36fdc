"""Dormant peers: a peer whose transport stores its frames (``PeerHello.durable_for``).

Driven through a transport double that keeps every frame sent, as a broker would, and
lets the test speak for the remote process through the `TransportHandler` it was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio
import anyio.abc
import pydantic_core
import pytest

from dispatchio import (
    BasicMessageListener,
    ListenerId,
    Message,
    MessageDispatcher,
    PeerLostError,
    UndeliverableError,
    make_plugin_manager,
)
from dispatchio.transport import PeerHello, Transport, TransportHandler

pytestmark = pytest.mark.anyio

FAST = {"heartbeat_interval": 0.05, "heartbeat_tolerance": 3}


class StoringTransport(Transport):
    """Accepts every frame for any process and keeps it (what a broker's inbox does)."""

    scheme: ClassVar[str] = "store"
    peer_backpressure = False

    def __init__(self, options: Any = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.handler: TransportHandler | None = None
        self.sent: list[tuple[ListenerId, list[Any]]] = []
        self.stopped = anyio.Event()

    async def serve(
        self,
        handler: TransportHandler,
        local: PeerHello,
        *,
        listen: Sequence[str],
        task_status: anyio.abc.TaskStatus[tuple[str, ...]],
    ) -> None:
        self.handler = handler
        task_status.started(tuple(listen))
        await self.stopped.wait()

    async def connect(self, url: str) -> None:
        pass

    def send(self, process: ListenerId, frame: bytes) -> None:
        self.sent.append((process, pydantic_core.from_json(frame)))

    def disconnect(self, process: ListenerId, reason: str) -> None:
        pass

    async def aclose(self) -> None:
        self.stopped.set()

    # The remote process "p1", as the test plays it.

    def up(self, durable_for: float, incarnation: int = 1) -> None:
        assert self.handler is not None
        self.handler.peer_up(PeerHello("p1", incarnation, (), durable_for))
        snapshot = [2, 1, 0, ["bob"], [["news", ["bob"]]], []]
        self.handler.frame_received("p1", pydantic_core.to_json(snapshot))

    def kinds_to_p1(self) -> list[int]:
        return [frame[0] for process, frame in self.sent if process == "p1"]


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[tuple[MessageDispatcher, StoringTransport]]:
    transport = StoringTransport()
    dispatcher = MessageDispatcher(
        "p0",
        plugins=make_plugin_manager(load_entrypoints=False),
        listen=["store://here"],
        transports=[transport],
        reply_timeout=5.0,
        **{**FAST, **options},
    )
    async with dispatcher:
        yield dispatcher, transport


async def _until(dispatcher: MessageDispatcher, condition: Any) -> None:
    while not condition():
        await dispatcher._mesh.changed.wait()  # type: ignore[union-attr]


def _inbox(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener("inbox")
    listener.add_rule(callback=lambda message: None)
    dispatcher.register(listener)


async def test_a_link_up_sends_the_snapshot_and_asks_for_the_peers() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=0)
            await a.wait_for_listener("bob", timeout=5)
            kinds = transport.kinds_to_p1()
    assert kinds[:2] == [2, 4]  # SNAPSHOT, then SNAPSHOT_REQUEST


async def test_a_silent_durable_peer_keeps_its_listeners_and_takes_letters() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=60)
            await a.wait_for_listener("bob", timeout=5)
            await _until(a, lambda: "p1" not in a.peers)  # silent past the bound
            await a.wait_for_listener("bob", timeout=0.1)  # still listed
            transport.sent.clear()
            await a.send(Message("letter", "kept", destination="bob"))
            await a.send(Message("headline", "kept too", group="news"))
            stored = [frame[2] for process, frame in transport.sent if frame[0] == 0]
            with pytest.raises(UndeliverableError, match="stopped answering"):
                await a.request(Message("ping", destination="bob"))
            _inbox(a)
            with pytest.raises(UndeliverableError, match="stopped answering"):
                await a.send(
                    Message("ping", destination="bob", source="inbox", response_required=True)
                )
    assert stored == ["kept", "kept too"]


async def test_replies_a_durable_peer_owed_fail_when_it_falls_silent() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=60)
            await a.wait_for_listener("bob", timeout=5)
            with pytest.raises(PeerLostError):
                await a.request(Message("ping", destination="bob"))


async def test_a_dormant_peer_that_comes_back_is_up_with_its_listeners() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=60)
            await _until(a, lambda: "p1" not in a.peers)
            assert transport.handler is not None
            transport.handler.peer_up(PeerHello("p1", 2, (), 60))  # restarted
            peers = a.peers
            await a.wait_for_listener("bob", timeout=0.1)  # kept until its snapshot
    assert peers == frozenset({"p1"})


async def test_durable_for_0_forgets_a_silent_peer_at_once() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=0)
            await a.wait_for_listener("bob", timeout=5)
            await _until(a, lambda: "p1" not in a.peers)
            with pytest.raises(UndeliverableError, match=r"no listener .bob."):
                await a.send(Message("letter", destination="bob"))


async def test_a_goodbye_forgets_a_durable_peer_at_once() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=60)
            await a.wait_for_listener("bob", timeout=5)
            assert transport.handler is not None
            transport.handler.frame_received("p1", b'[6,"closing"]')
            known = a._mesh.has_listener("bob")  # type: ignore[union-attr]
    assert known is False


async def test_a_dormant_peer_is_forgotten_when_its_durable_for_expires() -> None:
    with anyio.fail_after(5):
        async with running() as (a, transport):
            transport.up(durable_for=0.2)
            await _until(a, lambda: "p1" not in a.peers)
            await _until(a, lambda: not a._mesh.has_listener("bob"))  # type: ignore[union-attr]
