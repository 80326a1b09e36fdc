"""Frames inside WebSocket messages: each binary message is one or more frames.

A frame on the link is ``u32 big-endian length + payload``; a message carries the frames
that queued up while the previous message was being written, at most `BATCH_LIMIT`
bytes unless a single frame is larger. The WebSocket reader refuses a message over the
receiver's cap from its header, before buffering it; this module then checks every
frame's length against ``max_frame_size`` and that the message ends on a frame boundary.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from dispatchio import TransportError

__all__ = ["BATCH_LIMIT", "HEADER", "FrameError", "batches", "message_cap", "split"]

HEADER = struct.Struct(">I")
#: Frames are packed into messages of at most this many bytes (a larger frame goes alone).
#: A constant, not an option: a receiver must accept what any sender packs.
BATCH_LIMIT = 256 * 1024


class FrameError(TransportError):
    """A WebSocket message from a peer is not a valid sequence of frames."""


def message_cap(max_frame_size: int) -> int:
    """The largest WebSocket message a receiver with ``max_frame_size`` accepts."""
    return max(BATCH_LIMIT, max_frame_size + HEADER.size)


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

    ``total`` is their combined size. Each message ends on a frame boundary and holds at
    most `BATCH_LIMIT` bytes, unless one frame alone is larger.
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
        size += frame_size
    yield b"".join(parts[start:])
