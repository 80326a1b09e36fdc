"""`RecordingHandler`: a `TransportHandler` for testing a transport without a dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from dispatchio import ListenerId, MessageDispatcher
from dispatchio.transport import PeerHello


class RecordingHandler:
    """A `dispatchio.transport.TransportHandler` that records every call a transport
    makes, so a test can drive a transport directly and wait for what it reports.

    Pass it to `Transport.serve` in place of the dispatcher's mesh. It keeps:

    * ``ups``: every `PeerHello` given to ``peer_up``, in order;
    * ``up``: the peers whose link is up now, by process ID;
    * ``downs``: every ``(process, reason)`` given to ``peer_down``, in order;
    * ``frames``: the frames received, by sending process, in order (copied to `bytes`),
      whether given one by one (``frame_received``) or together (``frames_received``,
      which records each through ``frame_received``);
    * ``dial_errors``: every ``(url, error)`` given to ``dial_failed``, in order.

    Its methods never raise, as the protocol demands. It runs no dispatcher: reading
    `dispatcher` raises `AttributeError`, so a transport that needs one (the HTTP
    gateway, say) must be tested with that part switched off or with a real dispatcher.
    Use it from the event loop thread of the transport under test only.
    """

    def __init__(self) -> None:
        self.ups: list[PeerHello] = []
        self.up: dict[ListenerId, PeerHello] = {}
        self.downs: list[tuple[ListenerId, str]] = []
        self.frames: dict[ListenerId, list[bytes]] = {}
        self.dial_errors: list[tuple[str, str]] = []
        self._changed = anyio.Event()

    @property
    def dispatcher(self) -> MessageDispatcher:
        """Always raises `AttributeError`: a `RecordingHandler` runs no dispatcher."""
        raise AttributeError(
            "a RecordingHandler runs no dispatcher: switch off the transport's part that"
            " needs one, or test that part through a real MessageDispatcher"
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def peer_up(self, hello: PeerHello) -> None:
        self.ups.append(hello)
        self.up[hello.process] = hello
        self._notify()

    def peer_down(self, process: ListenerId, reason: str) -> None:
        self.downs.append((process, reason))
        self.up.pop(process, None)
        self._notify()

    def frame_received(self, process: ListenerId, frame: bytes) -> None:
        self.frames.setdefault(process, []).append(bytes(frame))
        self._notify()

    def frames_received(self, process: ListenerId, frames: Sequence[bytes]) -> None:
        for frame in frames:
            self.frame_received(process, frame)

    def dial_failed(self, url: str, error: str) -> None:
        self.dial_errors.append((url, error))
        self._notify()

    async def wait(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checking it after every recorded call.

        It never times out by itself: bound it with `anyio.fail_after`.
        """
        while not condition():
            await self._changed.wait()

    async def wait_up(self, process: ListenerId) -> PeerHello:
        """Wait until the link to ``process`` is up; return its `PeerHello`."""
        await self.wait(lambda: process in self.up)
        return self.up[process]

    async def wait_down(self, process: ListenerId) -> None:
        """Wait until the link to ``process`` is not up (returns at once if it never was)."""
        await self.wait(lambda: process not in self.up)

    async def wait_frames(self, process: ListenerId, count: int) -> list[bytes]:
        """Wait until ``count`` frames have arrived from ``process``; return all so far."""
        await self.wait(lambda: len(self.frames.get(process, ())) >= count)
        return self.frames[process]
