"""Frames inside WebSocket messages: each binary message is one or more frames.

A frame on the link is ``u32 big-endian length + payload``; a message carries the frames
that queued up while the previous message was being written, at most `BATCH_LIMIT`
bytes. A frame too large for one message starts a message of its own, exactly
`BATCH_LIMIT` bytes long (its header and the first bytes of its payload), and the next
messages carry the rest of its payload, `BATCH_LIMIT` bytes at most each. So no message
is larger than `BATCH_LIMIT`: the WebSocket reader refuses a larger one from its header,
before buffering it, and what a link holds of a large frame is reassembled here, under a
budget shared by every link of the transport (`ReceiveBudget`, ``max_receive_bytes``).
`FrameReader` checks every frame's length against ``max_frame_size`` before keeping a
byte of it, and that a message ends on a frame boundary or continues a large frame.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from dispatchio import TransportError

__all__ = [
    "BATCH_LIMIT",
    "HEADER",
    "FrameError",
    "FrameReader",
    "ReceiveBudget",
    "batches",
    "message_cap",
    "split",
]

HEADER = struct.Struct(">I")
#: Frames are packed into messages of at most this many bytes (a larger frame is cut into
#: several). A constant, not an option: a receiver must accept what any sender packs.
BATCH_LIMIT = 256 * 1024
_FIRST_PART = BATCH_LIMIT - HEADER.size  # payload bytes in a large frame's first message


class FrameError(TransportError):
    """A WebSocket message from a peer is not a valid sequence of frames."""


def message_cap() -> int:
    """The largest WebSocket message a peer sends or accepts."""
    return BATCH_LIMIT


class ReceiveBudget:
    """Bytes held at once against one limit, across connections: large frames being
    reassembled by all the peer links of a transport (``max_receive_bytes``), or the
    gateway's request bodies (``max_pending_body_bytes``, `dispatchio_http._json.BodyHold`).

    Without a bound across links, many links each sending most of a large frame and
    stopping would make the receiver hold that much per link.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes held now, over every link.
        self.held = 0


class FrameReader:
    """The frames of one link's messages, in order, large frames reassembled.

    Once it raised `FrameError` the link is over (the caller drops it); `release` gives
    the budget back what it holds.
    """

    __slots__ = ("_budget", "_held", "_max", "_need", "_parts")

    def __init__(self, max_frame_size: int, budget: ReceiveBudget) -> None:
        self._max = max_frame_size
        self._budget = budget
        self._parts: list[bytes] = []  # a large frame's payload so far
        self._held = 0  # their bytes, counted in the budget
        self._need = 0  # bytes of it still to come

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The frames ``data`` (one message) completes, in order; the ones before a
        fault are still given.

        Raises:
            FrameError: an empty message, a length over ``max_frame_size``, a frame cut
                off by the end of a message that does not start a large frame, a
                continuation running past its frame, or a large frame that would pass
                the budget all links share (``max_receive_bytes``).
        """
        size = len(data)
        if self._need:
            if not size or size > self._need:
                raise FrameError(
                    f"a message of {size} bytes does not continue a frame missing"
                    f" {self._need} bytes"
                )
            self._keep(data, size)
            self._need -= size
            if not self._need:
                frame = b"".join(self._parts)
                self.release()
                yield frame
            return
        if size == BATCH_LIMIT:
            (length,) = HEADER.unpack_from(data)
            if length > _FIRST_PART:  # the first message of a large frame
                if length > self._max:
                    raise FrameError(f"frame of {length} bytes exceeds max_frame_size {self._max}")
                self._keep(data[HEADER.size :], _FIRST_PART)
                self._need = length - _FIRST_PART
                return
        yield from split(data, self._max)

    def _keep(self, part: bytes, size: int) -> None:
        budget = self._budget
        if budget.held + size > budget.limit:
            raise FrameError(
                f"a frame being reassembled would pass the {budget.limit} bytes of"
                " incomplete frames all links may hold (max_receive_bytes)"
            )
        budget.held += size
        self._held += size
        self._parts.append(part)

    def release(self) -> None:
        """Drop the large frame being reassembled, if any, and give its bytes back to the
        budget (at the end of the link; idempotent)."""
        self._budget.held -= self._held
        self._held = 0
        self._parts = []
        self._need = 0


def split(data: bytes, max_frame_size: int) -> Iterator[bytes]:
    """The frames of one message, in order; the ones before a fault are still given.

    Raises:
        FrameError: an empty message, a length over ``max_frame_size``, or a frame cut
            off by the end of the message.
    """
    end = len(data)
    if end < HEADER.size:
        raise FrameError(f"a message of {end} bytes holds no frame")
    pos = 0
    unpack = HEADER.unpack_from
    while pos < end:
        if end - pos < HEADER.size:
            raise FrameError("a frame header is cut off by the end of the message")
        (length,) = unpack(data, pos)
        if length > max_frame_size:
            raise FrameError(f"frame of {length} bytes exceeds max_frame_size {max_frame_size}")
        start = pos + HEADER.size
        pos = start + length
        if pos > end:
            raise FrameError(f"a frame of {length} bytes is cut off by the end of the message")
        yield data[start:pos]


def batches(parts: list[bytes], total: int) -> Iterator[bytes]:
    """Join queued ``parts`` (header, payload, header, payload, ...) into messages.

    ``total`` is their combined size. Each message holds at most `BATCH_LIMIT` bytes and
    ends on a frame boundary, except the messages of a frame too large for one (see the
    module docstring).
    """
    if total <= BATCH_LIMIT:
        yield b"".join(parts)
        return
    start = 0
    size = 0
    for index in range(0, len(parts), 2):
        frame_size = len(parts[index]) + len(parts[index + 1])
        if size and size + frame_size > BATCH_LIMIT:
            yield b"".join(parts[start:index])
            start, size = index, 0
        if frame_size > BATCH_LIMIT:
            payload = parts[index + 1]
            yield parts[index] + payload[:_FIRST_PART]
            for offset in range(_FIRST_PART, len(payload), BATCH_LIMIT):
                yield payload[offset : offset + BATCH_LIMIT]
            start = index + 2
            continue
        size += frame_size
    if start < len(parts):
        yield b"".join(parts[start:])
