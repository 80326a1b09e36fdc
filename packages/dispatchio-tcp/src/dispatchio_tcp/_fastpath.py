"""A link's data path on asyncio without TLS: an `asyncio.BufferedProtocol`.

After the handshake (done on anyio streams, so it runs the same on asyncio and trio)
`adopt` moves the socket onto a `FastPath`: the event loop reads straight into a
preallocated ring and every whole frame is handed to the core from the protocol
callback, without a task in between; writes are batched per event-loop pass. The frame
rules (length check, GOODBYE) are `_framing`'s, shared with the stream path.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from dispatchio import ListenerId
from dispatchio_tcp._framing import (
    ENDED,
    HEADER,
    FrameError,
    ReceiveBudget,
    outbox_full,
    split_frames,
    too_large,
)

__all__ = ["FastPath", "ReceiveBudget", "adopt", "describe", "resume_reading"]

logger = logging.getLogger("dispatchio.tcp")

# The receive ring's usual size, the free room kept at its end, and the largest frame
# copied behind its header into one write.
RING_SIZE = 256 * 1024
_MIN_FREE = 64 * 1024
_JOIN_LIMIT = 64 * 1024
_pack_header = HEADER.pack
_HEADER_SIZE = HEADER.size


def describe(exc: BaseException) -> str:
    """``Type: text`` of an exception, for logs and peer_down reasons."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FastPath(asyncio.BufferedProtocol):
    """The socket's protocol once the link's handshake is done.

    Reading: the event loop reads straight into a preallocated ring (`get_buffer`), and
    `buffer_updated` hands every whole frame to the core at once, in one
    ``received(process, frames)`` call (`TransportHandler.frames_received`). A frame's length is
    checked against ``max_frame_size`` before the ring grows for it (up to that size;
    it shrinks back once the large frame is parsed).
    Writing: `send` writes the first frame of an event-loop pass at once and holds the
    ones sent after it in that pass until the pass ends; while the socket is busy
    asyncio buffers the writes. Held frames plus asyncio's buffer are the outbox that
    ``max_outbox_bytes`` bounds.
    The end: ``on_end(reason, override)`` is called once when the link is over (the
    peer closed, the stream is corrupt, the socket failed); the link's task then closes
    the socket. `stop` ends it from this side without a call.
    """

    # Slots: `send` and the read callbacks read several of these per frame.
    __slots__ = (
        "budget",
        "buffered",
        "call_soon",
        "corked",
        "end",
        "ended",
        "extra",
        "max_frame",
        "max_outbox",
        "on_end",
        "pending",
        "process",
        "received",
        "ring",
        "room",
        "start",
        "transport",
        "view",
        "write",
        "writing_paused",
    )

    def __init__(
        self,
        process: ListenerId,
        transport: asyncio.Transport,
        received: Callable[[ListenerId, list[bytes]], None],
        on_end: Callable[[str, bool], None],
        *,
        max_frame_size: int,
        max_outbox_bytes: int,
        budget: ReceiveBudget | None = None,
    ) -> None:
        self.process = process
        self.budget = budget or ReceiveBudget(max_frame_size + _HEADER_SIZE)
        self.extra = 0  # bytes of the ring beyond RING_SIZE, counted in the budget
        self.transport = transport
        self.write = transport.write
        self.buffered = transport.get_write_buffer_size
        self.call_soon = asyncio.get_running_loop().call_soon
        self.corked = False  # a frame was written in this loop pass already
        self.pending: list[bytes] = []  # frames written after it, held until the pass ends
        # What the held frames may still add in this pass: ``max_outbox_bytes`` less
        # asyncio's buffer after the pass's first write, less the held frames.
        self.room = max_outbox_bytes
        self.received = received
        self.on_end = on_end
        self.max_frame = max_frame_size
        self.max_outbox = max_outbox_bytes
        self.ring = bytearray(RING_SIZE)
        self.view = memoryview(self.ring)
        self.start = 0  # first byte not yet parsed
        self.end = 0  # end of the bytes received
        #: True once the link is over: nothing more is delivered or written.
        self.ended = False
        #: asyncio's flow control: the write buffer is over its high-water mark.
        self.writing_paused = False

    # ------------------------------------------------------------------ writing

    def send(self, frame: bytes) -> None:
        """Write one frame; see `TcpTransport.send` (this is its hot path).

        The first frame of a loop pass is written at once; the frames that follow it
        in the same pass are held and written together when the pass ends (`_uncork`),
        so a burst costs two writes rather than one per frame, with no timer. Within a
        pass nothing else writes to the socket, so asyncio's buffer, measured after the
        first write, stays what it was for the frames held after it (``room`` is what
        they may still add).

        Raises:
            MessageTooLargeError: the frame exceeds ``max_frame_size``.
            OutboxFullError: asyncio's buffer and the held frames reach
                ``max_outbox_bytes``; nothing was queued.
        """
        if self.ended:
            return  # accepted, then lost with the link: peer_down is on its way
        size = len(frame)
        if size > self.max_frame:
            raise too_large(size, self.max_frame)
        if self.corked:
            room = self.room - size - _HEADER_SIZE
            if room < 0 and self.room < self.max_outbox:  # a frame alone always goes
                raise outbox_full(self.process, self.max_outbox - self.room, self.max_outbox)
            self.room = room
            self.pending += (_pack_header(size), frame)
            return
        held = self.buffered()
        if held and held + size + _HEADER_SIZE > self.max_outbox:
            raise outbox_full(self.process, held, self.max_outbox)
        self.corked = True
        self.call_soon(self._uncork)
        if size <= _JOIN_LIMIT:
            self.write(_pack_header(size) + frame)
        else:
            self.write(_pack_header(size))
            self.write(frame)
        self.room = self.max_outbox - self.buffered()

    def _uncork(self) -> None:
        self.corked = False
        self.flush()

    def flush(self) -> None:
        """Write the frames held back in this loop pass."""
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if not self.ended:
                self.write(data)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False

    # ------------------------------------------------------------------ reading

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        if not self.ended:
            self._parse(self.end + nbytes)

    def _parse(self, end: int) -> None:
        """Deliver every whole frame in ``ring[start:end]`` (in one call); keep the rest."""
        frames, pos, need, error = split_frames(self.ring, self.start, end, self.max_frame)
        if frames:
            try:
                self.received(self.process, frames)
            except Exception:
                # The core contains each frame's failure itself; this guards the link
                # against a handler that breaks that contract (the rest of the batch
                # is lost, the link goes on).
                logger.exception("frame handler failed for process %r", self.process)
            if self.ended:  # the handler ended the link
                return
        if need == ENDED:
            if error is None:
                self.end_link("closed by the peer")
            else:
                self._corrupt(error)
            return
        self._make_room(pos, end, need)

    def _corrupt(self, exc: FrameError) -> None:
        logger.warning("dropped the link to process %r: %s", self.process, exc)
        self.end_link(f"protocol error: {exc}", override=True)

    def _make_room(self, pos: int, end: int, need: int) -> None:
        """Keep the unparsed bytes ``[pos, end)`` and room after them for ``need`` bytes."""
        have = end - pos
        size = len(self.ring)
        if not have:
            pos = end = 0
            if size > RING_SIZE:  # a large frame is done: give the memory back
                self._resize(RING_SIZE)
        elif need > size and size - have < _MIN_FREE:
            # need = header + a length already checked against max_frame_size. The ring
            # grows as the frame's bytes arrive (doubling), not when its header does: a
            # header alone reserves nothing.
            new = min(need, max(2 * size, have + _MIN_FREE))
            if not self._resize(new, pos, end):
                return
            pos, end = 0, have
        elif pos and (pos + need > size or size - end < _MIN_FREE):
            self.ring[:have] = self.ring[pos:end]
            pos, end = 0, have
        self.start, self.end = pos, end

    def _resize(self, new: int, pos: int = 0, end: int = 0) -> bool:
        """Replace the ring by one of ``new`` bytes holding ``ring[pos:end]``.

        Returns False when the transport's receive budget cannot cover it: the link is
        then ended (its partial frame dropped), which is logged.
        """
        budget = self.budget
        extra = max(0, new - RING_SIZE)
        if budget.held + extra - self.extra > budget.limit:
            logger.warning(
                "dropped the link to process %r: its incomplete frame of %d bytes would pass"
                " the %d bytes of incomplete frames all links may hold (max_receive_bytes)",
                self.process,
                new,
                budget.limit,
            )
            self.end_link("receive budget exhausted (max_receive_bytes)", override=True)
            return False
        budget.held += extra - self.extra
        self.extra = extra
        ring = bytearray(new)
        ring[: end - pos] = self.view[pos:end]
        self.ring, self.view = ring, memoryview(ring)
        return True

    def feed(self, data: bytes) -> None:
        """Parse bytes read before this protocol took over, as if the socket gave them."""
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self.ended:
            room = self.get_buffer(-1)
            count = min(len(room), len(view) - pos)
            room[:count] = view[pos : pos + count]
            self.buffer_updated(count)
            pos += count

    def eof_received(self) -> bool:
        self.end_link("connection closed by the peer")
        return False  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.end_link("connection closed" if exc is None else f"connection lost: {describe(exc)}")

    # ------------------------------------------------------------------ the end

    def end_link(self, reason: str, *, override: bool = False) -> None:
        """The link is over: deliver no more, tell ``on_end`` (once)."""
        if not self.ended:
            self.stop()
            self.on_end(reason, override)

    def stop(self) -> None:
        """Deliver and write nothing more, and drop the buffers (the link's task closes
        the socket)."""
        self.ended = True
        self.start = self.end = 0
        self.pending.clear()
        if not self.transport.is_closing():
            self.transport.pause_reading()  # so asyncio asks for no buffer any more
        self.budget.held -= self.extra
        self.extra = 0
        # A slice asyncio is filling right now keeps the old ring alive until it returns.
        self.ring = bytearray()
        self.view = memoryview(self.ring)


def adopt(
    stream: Any,
    leftover: bytes,
    make: Callable[[asyncio.Transport], FastPath],
) -> tuple[FastPath, bytes, bool] | None:
    """Move an anyio socket stream of asyncio onto the protocol ``make`` builds.

    Returns ``(protocol, read_ahead, at_eof)``: the bytes the handshake read ahead
    (``leftover``) and those anyio had queued, to `FastPath.feed`, and whether the peer
    had closed already. The caller writes what it must write first, feeds, then calls
    `resume_reading`. Returns None, changing nothing, on anything unexpected (trio,
    TLS, another layout of anyio's internals, a closing connection): the link keeps the
    anyio stream path.
    """
    transport = getattr(stream, "_transport", None)
    anyio_protocol = getattr(stream, "_protocol", None)
    read_queue = getattr(anyio_protocol, "read_queue", None)
    if (
        not isinstance(transport, asyncio.Transport)
        or not isinstance(read_queue, collections.deque)
        or transport.is_closing()
        or getattr(anyio_protocol, "exception", None) is not None
    ):
        return None
    ahead = b"".join([leftover, *read_queue])
    read_queue.clear()
    at_eof = bool(getattr(anyio_protocol, "is_at_eof", False))
    fast = make(transport)
    transport.set_protocol(fast)
    transport.set_write_buffer_limits()  # anyio's stream set them to 0
    return fast, ahead, at_eof


def resume_reading(fast: FastPath) -> None:
    """Start reading the socket into ``fast``.

    anyio leaves reading paused between receive() calls. Resume it in a context where
    anyio knows it runs on asyncio: the read callbacks run the core's frame handling
    outside any task.
    """
    transport = fast.transport
    if transport.is_reading():
        transport.pause_reading()
    _asyncio_context().run(transport.resume_reading)


def _asyncio_context() -> contextvars.Context:
    """A copy of the current context in which sniffio (thus anyio) reports asyncio.

    Protocol callbacks run outside any task, where sniffio cannot sniff asyncio unless
    `anyio.run` set its context variable; plain `asyncio.run` does not.
    """
    context = contextvars.copy_context()
    try:
        import sniffio
    except ImportError:  # anyio then assumes asyncio whenever a loop runs
        return context
    context.run(sniffio.current_async_library_cvar.set, "asyncio")
    return context
