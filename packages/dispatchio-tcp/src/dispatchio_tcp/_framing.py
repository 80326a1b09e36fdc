"""Length-prefixed frames: ``u32 big-endian length + payload``.

The decoder is fed whatever chunks the stream returns and yields whole frames. A length
is checked against ``max_frame_size`` before a single byte is buffered for it, so a
hostile peer cannot make the receiver allocate more than it allows. Whole frames inside
a chunk are sliced straight out of it; only a frame split across chunks is assembled
in the decoder's reusable buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from dispatchio._errors import TransportError

__all__ = [
    "GOODBYE",
    "HEADER",
    "MAX_FRAME_LIMIT",
    "FrameDecoder",
    "FrameError",
    "encode_header",
    "goodbye",
]

#: The length prefix.
HEADER = struct.Struct(">I")
#: A length no frame can have (``max_frame_size`` stays below it): the sender will
#: write nothing more on this link (a graceful close that also works over TLS, which
#: has no half-close in anyio).
GOODBYE = 0xFFFFFFFF
#: The largest ``max_frame_size`` the framing can carry.
MAX_FRAME_LIMIT = GOODBYE - 1
_GOODBYE_BYTES = HEADER.pack(GOODBYE)
_INITIAL_BUFFER = 64 * 1024


class FrameError(TransportError):
    """The peer sent bytes that are not a valid frame stream (e.g. a length too large)."""


def encode_header(length: int) -> bytes:
    """The length prefix of a frame of ``length`` bytes."""
    return HEADER.pack(length)


def goodbye() -> bytes:
    """The marker a sender writes last when it closes a link gracefully."""
    return _GOODBYE_BYTES


class FrameDecoder:
    """Incremental decoder: `feed` chunks, get whole frames in order.

    After a `FrameError` or a goodbye the decoder is finished and refuses more input.
    """

    __slots__ = ("_buf", "_have", "_max", "_target", "_view", "finished")

    def __init__(self, max_frame_size: int) -> None:
        if not 0 <= max_frame_size <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame_size must be in 0..{MAX_FRAME_LIMIT}")
        self._max = max_frame_size
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

    def _check(self, length: int) -> int:
        if length > self._max:
            self.finished = True
            if length == GOODBYE:
                return -1
            raise FrameError(f"frame of {length} bytes exceeds max_frame_size {self._max}")
        return length + HEADER.size

    def _reserve(self, size: int) -> None:
        if len(self._buf) < size:
            # Only ever for a length already checked against max_frame_size.
            grown = bytearray(max(size, min(2 * len(self._buf), self._max + HEADER.size)))
            grown[: self._have] = self._view[: self._have]
            self._view.release()
            self._buf = grown
            self._view = memoryview(grown)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Consume ``data``; yield every frame it completes, in order.

        Raises:
            FrameError: a frame length exceeds ``max_frame_size``, or data follows a
                goodbye; the frames before it were yielded already.
        """
        if self.finished:
            if data:
                raise FrameError("data after the end of the frame stream")
            return
        view = memoryview(data)
        end = len(view)
        pos = 0
        buf = self._view
        if self._have:
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
                    yield from self._after_goodbye(end - pos)
                    return
                self._reserve(self._target)
                buf = self._view
            take = min(self._target - self._have, end - pos)
            buf[self._have : self._have + take] = view[pos : pos + take]
            self._have += take
            pos += take
            if self._have < self._target:
                return
            self._have = 0
            yield bytes(buf[HEADER.size : self._target])
        unpack = HEADER.unpack_from
        while end - pos >= HEADER.size:
            size = self._check(unpack(view, pos)[0])
            if size < 0:
                yield from self._after_goodbye(end - pos - HEADER.size)
                return
            if end - pos < size:
                self._target = size
                self._reserve(size)
                break
            yield bytes(view[pos + HEADER.size : pos + size])
            pos += size
        rest = end - pos
        if rest:
            self._view[:rest] = view[pos:end]
            self._have = rest

    def _after_goodbye(self, extra: int) -> Iterator[bytes]:
        if extra:
            raise FrameError("data after the end of the frame stream")
        return iter(())
