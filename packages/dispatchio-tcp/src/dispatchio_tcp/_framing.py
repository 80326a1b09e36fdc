"""Length-prefixed frames: ``u32 big-endian length + payload``.

One length check (`frame_size`) and one parser core (`split_frames`) serve both data
paths of a link: the `FrameDecoder` of the anyio stream path, fed whatever chunks the
stream returns, and the receive ring of the asyncio fast path (`_fastpath`). A length
is checked against ``max_frame_size`` before a single byte is buffered for it, so a
hostile peer cannot make the receiver allocate more than it allows. Whole frames inside
a chunk are sliced straight out of it; only a frame split across chunks is assembled
in the decoder's reusable buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from dispatchio import ListenerId, MessageTooLargeError, OutboxFullError, TransportError

__all__ = [
    "ENDED",
    "GOODBYE",
    "HEADER",
    "MAX_FRAME_LIMIT",
    "FrameDecoder",
    "FrameError",
    "ReceiveBudget",
    "encode_header",
    "frame_size",
    "goodbye",
    "outbox_full",
    "split_frames",
    "too_large",
]

#: The length prefix.
HEADER = struct.Struct(">I")
#: A length no frame can have (``max_frame_size`` stays below it): the sender will
#: write nothing more on this link (a graceful close that also works over TLS, which
#: has no half-close in anyio).
GOODBYE = 0xFFFFFFFF
#: The largest ``max_frame_size`` the framing can carry.
MAX_FRAME_LIMIT = GOODBYE - 1
#: What `frame_size` and `split_frames` report for a goodbye: the stream is over.
ENDED = -1
_GOODBYE_BYTES = HEADER.pack(GOODBYE)
_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
_INITIAL_BUFFER = 64 * 1024
_AFTER_END = "data after the end of the frame stream"


class FrameError(TransportError):
    """The peer sent bytes that are not a valid frame stream (e.g. a length too large)."""


class ReceiveBudget:
    """Bytes of receive buffer beyond their usual size held by all the links of a
    transport (the fast path's ring beyond `RING_SIZE`, a `FrameDecoder`'s buffer
    beyond its initial size).

    One link may grow its buffer up to ``max_frame_size`` for a large frame; without a
    bound across links, many links each sending most of a large frame and stopping
    would make the receiver hold that much per link.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes held now, over every link.
        self.held = 0


def encode_header(length: int) -> bytes:
    """The length prefix of a frame of ``length`` bytes."""
    return HEADER.pack(length)


def goodbye() -> bytes:
    """The marker a sender writes last when it closes a link gracefully."""
    return _GOODBYE_BYTES


def outbox_full(process: ListenerId, held: int, limit: int) -> OutboxFullError:
    """The error `TcpTransport.send` raises when ``process``'s outbox is full."""
    return OutboxFullError(
        f"outbox to process {process!r} holds {held} bytes (max_outbox_bytes {limit})"
    )


def too_large(size: int, max_frame_size: int) -> MessageTooLargeError:
    """The error `TcpTransport.send` raises for a frame over ``max_frame_size``."""
    return MessageTooLargeError(f"frame of {size} bytes exceeds max_frame_size {max_frame_size}")


def frame_size(length: int, max_frame_size: int) -> int:
    """The size on the wire (header included) of a frame whose header says ``length``.

    Returns `ENDED` for a goodbye.

    Raises:
        FrameError: ``length`` exceeds ``max_frame_size``.
    """
    if length > max_frame_size:
        if length == GOODBYE:
            return ENDED
        raise FrameError(_too_long(length, max_frame_size))
    return length + _HEADER_SIZE


def _too_long(length: int, max_frame_size: int) -> str:
    return f"frame of {length} bytes exceeds max_frame_size {max_frame_size}"


def split_frames(
    data: bytes | bytearray | memoryview, pos: int, end: int, max_frame_size: int
) -> tuple[list[bytes], int, int, FrameError | None]:
    """Slice every whole frame out of ``data[pos:end]``.

    Returns ``(frames, pos, need, error)``: ``pos`` is the first byte not consumed;
    ``need`` is the size (header included) of the incomplete frame starting there
    (``HEADER.size`` while even its header is incomplete), or `ENDED` when a goodbye
    was the last thing in ``data``; ``error`` is the `FrameError` the stream ended with
    (a bad length, or data after a goodbye), after the frames before it.

    The length check is `frame_size`'s, written out: this loop runs once per frame.
    """
    frames: list[bytes] = []
    append = frames.append
    header = _HEADER_SIZE
    unpack = _unpack_header
    last = end - header  # the last position a whole header can start at
    while pos <= last:
        length = unpack(data, pos)[0]
        if length > max_frame_size:
            if length != GOODBYE:
                return frames, pos, ENDED, FrameError(_too_long(length, max_frame_size))
            if pos < last:
                return frames, pos, ENDED, FrameError(_AFTER_END)
            return frames, end, ENDED, None
        stop = pos + header + length
        if stop > end:
            return frames, pos, header + length, None
        # A slice of bytes is bytes already (bytes() returns it as is); a slice of a
        # bytearray is copied once more, which costs less than slicing a memoryview.
        append(bytes(data[pos + header : stop]))
        pos = stop
    return frames, pos, header, None


class FrameDecoder:
    """Incremental decoder: `feed` chunks, get whole frames in order.

    After a `FrameError` or a goodbye the decoder is finished and refuses more input.
    """

    __slots__ = ("_budget", "_buf", "_extra", "_have", "_max", "_target", "_view", "finished")

    def __init__(self, max_frame_size: int, budget: ReceiveBudget | None = None) -> None:
        """``budget``, shared by every link of a transport, bounds what their decoders
        hold beyond their initial buffers (`release` gives this one's share back)."""
        if not 0 <= max_frame_size <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame_size must be in 0..{MAX_FRAME_LIMIT}")
        self._max = max_frame_size
        self._budget = budget
        self._extra = 0  # bytes of the buffer beyond _INITIAL_BUFFER, counted in budget
        self._buf = bytearray(min(_INITIAL_BUFFER, max_frame_size + HEADER.size))
        self._view = memoryview(self._buf)
        self._have = 0  # bytes of a partial frame (header included) in the buffer
        self._target = 0  # total size of that frame, once its header is complete
        #: True once the peer said goodbye (or the stream was found corrupt).
        self.finished = False

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back, waiting for the rest."""
        return self._have

    @property
    def capacity(self) -> int:
        """Bytes of the reassembly buffer (it grows only for a length already checked)."""
        return len(self._buf)

    def _check(self, length: int) -> int:
        try:
            size = frame_size(length, self._max)
        except FrameError:
            self.finished = True
            raise
        if size < 0:
            self.finished = True
        return size

    def _reserve(self, size: int, frame: int) -> None:
        """Room for ``size`` bytes of a frame of ``frame`` bytes (header included).

        The buffer grows as the frame's bytes arrive (doubling, up to the frame's size),
        not when its header does: a header alone reserves nothing.

        Raises:
            FrameError: growing would pass the budget shared with the other links.
        """
        if len(self._buf) < size:
            # Only ever within a length already checked against max_frame_size.
            new = max(size, min(2 * len(self._buf), frame))
            budget = self._budget
            if budget is not None:
                extra = max(0, new - _INITIAL_BUFFER)
                if budget.held + extra - self._extra > budget.limit:
                    self.finished = True
                    raise FrameError(
                        f"its incomplete frame of {frame} bytes would pass the {budget.limit}"
                        " bytes of incomplete frames all links may hold (max_receive_bytes)"
                    )
                budget.held += extra - self._extra
                self._extra = extra
            grown = bytearray(new)
            grown[: self._have] = self._view[: self._have]
            self._view.release()
            self._buf = grown
            self._view = memoryview(grown)

    def _shrink(self) -> None:
        """Back to the initial buffer once the large frame it grew for is out."""
        self._view.release()
        self._buf = bytearray(_INITIAL_BUFFER)
        self._view = memoryview(self._buf)
        self.release()

    def release(self) -> None:
        """Give the budget back what this decoder holds beyond its initial buffer (at
        the end of its link; idempotent)."""
        if self._budget is not None:
            self._budget.held -= self._extra
        self._extra = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Consume ``data``; yield every frame it completes, in order.

        Raises:
            FrameError: a frame length exceeds ``max_frame_size``, or data follows a
                goodbye; the frames before it were yielded already.
        """
        if self.finished:
            if data:
                raise FrameError(_AFTER_END)
            return
        end = len(data)
        pos = 0
        if self._have:
            # Complete the frame held back from earlier chunks.
            buf = self._view
            view = memoryview(data)
            if self._have < HEADER.size:
                take = min(HEADER.size - self._have, end)
                buf[self._have : self._have + take] = view[:take]
                self._have += take
                pos = take
                if self._have < HEADER.size:
                    return
                self._target = self._check(HEADER.unpack_from(buf)[0])
                if self._target < 0:
                    self._have = 0
                    if end - pos:
                        raise FrameError(_AFTER_END)
                    return
            take = min(self._target - self._have, end - pos)
            self._reserve(self._have + take, self._target)
            buf = self._view
            buf[self._have : self._have + take] = view[pos : pos + take]
            self._have += take
            pos += take
            if self._have < self._target:
                return
            self._have = 0
            whole = bytes(buf[HEADER.size : self._target])
            if len(self._buf) > _INITIAL_BUFFER:
                self._shrink()
            yield whole
        frames, pos, need, error = split_frames(data, pos, end, self._max)
        yield from frames
        if need < 0:
            self.finished = True
            if error is not None:
                raise error
            return
        rest = end - pos
        if rest:
            self._target = need
            self._reserve(rest, need)
            self._view[:rest] = memoryview(data)[pos:end]
            self._have = rest
