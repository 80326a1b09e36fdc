"""An in-memory transport for testing the core's mesh in one process (not a real pipe)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dispatchio import ListenerId, MessageTooLargeError, TransportError
from dispatchio.transport import PeerHello, Transport, TransportHandler

# URL -> the transport listening there. Tests use unique URLs (mem://<test-specific name>).
_LISTENING: dict[str, MemoryTransport] = {}


class MemoryTransport(Transport):
    """Frames go through anyio memory streams; one pump task per transport delivers them."""

    scheme: ClassVar[str] = "mem"

    def __init__(self, options: Any = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.handler: TransportHandler | None = None
        self.hello: PeerHello | None = None
        self.links: dict[ListenerId, MemoryTransport] = {}
        self.inbox_in: MemoryObjectSendStream[tuple[str, Any]]
        self.inbox: MemoryObjectReceiveStream[tuple[str, Any]]
        self.inbox_in, self.inbox = anyio.create_memory_object_stream[tuple[str, Any]](math.inf)
        self.urls: tuple[str, ...] = ()
        self.closed = False
        # The URL this side dialed each process at: redialed after a disconnect.
        self.dialed: dict[ListenerId, str] = {}
        #: Every disconnect asked for, as (process, reason).
        self.disconnects: list[tuple[ListenerId, str]] = []
        #: While True, frames sent are accepted and lost (a frozen process says nothing).
        self.muted = False

    async def serve(
        self,
        handler: TransportHandler,
        local: PeerHello,
        *,
        listen: Sequence[str],
        task_status: anyio.abc.TaskStatus[tuple[str, ...]],
    ) -> None:
        self.handler, self.hello = handler, local
        for url in listen:
            _LISTENING[url] = self
        self.urls = tuple(listen)
        task_status.started(self.urls)
        with self.inbox:
            async for kind, payload in self.inbox:
                if kind == "up":
                    handler.peer_up(payload)
                elif kind == "down":
                    handler.peer_down(payload, "closed")
                elif kind == "redial":
                    with contextlib.suppress(TransportError):  # nobody there now: fine
                        await self.connect(payload)
                else:
                    handler.frame_received(*payload)

    async def connect(self, url: str) -> None:
        if self.closed:  # a redial still queued when this side closed
            raise TransportError("the transport is closed")
        peer = _LISTENING.get(url)
        if peer is None or peer.closed or self.hello is None or peer.hello is None:
            raise TransportError(f"nobody listens at {url}")
        hello = PeerHello(self.hello.process, self.hello.incarnation, self.urls)
        self.links[peer.hello.process] = peer
        self.dialed[peer.hello.process] = url
        peer.links[self.hello.process] = self
        self.inbox_in.send_nowait(("up", peer.hello))
        peer.inbox_in.send_nowait(("up", hello))

    def send(self, process: ListenerId, frame: bytes) -> None:
        if len(frame) > self.options.max_frame_size:
            raise MessageTooLargeError(f"frame of {len(frame)} bytes")
        peer = self.links.get(process)
        if peer is None or peer.closed or self.hello is None:
            raise TransportError(f"no link to {process!r}")
        if not self.muted:
            peer.inbox_in.send_nowait(("frame", (self.hello.process, frame)))

    def disconnect(self, process: ListenerId, reason: str) -> None:
        """Drop the link both ways (the other side sees it go down); the side that
        dialed redials, as a TCP dial loop does after any lost link."""
        self.disconnects.append((process, reason))
        peer = self.links.pop(process, None)
        if peer is None or self.hello is None:
            return
        if peer.links.pop(self.hello.process, None) is not None and not peer.closed:
            peer.inbox_in.send_nowait(("down", self.hello.process))
            url = peer.dialed.get(self.hello.process)
            if url is not None:
                peer.inbox_in.send_nowait(("redial", url))
        url = self.dialed.get(process)
        if url is not None and not self.closed:
            self.inbox_in.send_nowait(("redial", url))

    def crash(self) -> None:
        """Vanish without a goodbye: peers see the link go down (like a killed process)."""
        self.closed = True
        assert self.hello is not None
        for peer in self.links.values():
            if not peer.closed:
                peer.inbox_in.send_nowait(("down", self.hello.process))
        self.inbox_in.close()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            for url in self.urls:
                _LISTENING.pop(url, None)
            self.inbox_in.close()
        if self.handler is None:  # never served: nobody else will close the receiving end
            self.inbox.close()
