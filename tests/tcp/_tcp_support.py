"""Helpers for the dispatchio-tcp tests: running nodes, raw peers, hostile input."""

from __future__ import annotations

import random
from contextlib import AbstractAsyncContextManager

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from dispatchio.testing import RecordingHandler
from dispatchio_tcp import TcpOptions, TcpTransport
from dispatchio_tcp._framing import GOODBYE, encode_header, goodbye
from dispatchio_tcp._handshake import (
    MAGIC,
    PREFIX,
    VERSION,
    Hello,
    decode_body,
    decode_prefix,
    encode_hello,
)
from dispatchio_tcp._options import parse_url
from tests._transport_support import LogWatcher, serving
from tests._transport_support import Node as _Node
from tests._transport_support import watching_logs as _watching_logs

Node = _Node[TcpTransport]


def running(
    process: str,
    *,
    listen: tuple[str, ...] = ("tcp://127.0.0.1:0",),
    handler: RecordingHandler | None = None,
    **options: object,
) -> AbstractAsyncContextManager[Node]:
    """Serve a `TcpTransport` for the duration of the block, then close it."""
    return serving(TcpTransport(TcpOptions.model_validate(options)), process, listen, handler)


async def raw_connect(url: str) -> anyio.abc.SocketStream:
    """A plain socket to a node's URL."""
    host, port = parse_url(url, listening=False)
    return await anyio.connect_tcp(host, port)


async def raw_handshake(
    stream: anyio.abc.SocketStream, process: str = "zz-raw"
) -> tuple[Hello, BufferedByteReceiveStream]:
    """Do an unauthenticated handshake by hand, as a peer that arbitrates nothing.

    ``process`` must sort after the node's process ID, so the node sends the verdict.
    """
    await stream.send(raw_hello(process))
    return await raw_handshake_rest(stream, process)


def raw_hello(process: str) -> bytes:
    """The hello of an unauthenticated raw peer (see `raw_handshake`)."""
    return encode_hello(Hello(process, 1, (), random.randbytes(16), False))


async def raw_handshake_rest(
    stream: anyio.abc.SocketStream, process: str
) -> tuple[Hello, BufferedByteReceiveStream]:
    """The rest of `raw_handshake` once ``raw_hello(process)`` went out."""
    reader = BufferedByteReceiveStream(stream)
    theirs = decode_body(
        await reader.receive_exactly(decode_prefix(await reader.receive_exactly(PREFIX.size)))
    )
    assert str(theirs.process) < process
    assert await reader.receive_exactly(1) == b"\x01"
    return theirs, reader


def frame(payload: bytes) -> bytes:
    """A frame as it goes on the wire."""
    return encode_header(len(payload)) + payload


def watching_logs() -> AbstractAsyncContextManager[LogWatcher]:
    """Attach a `LogWatcher` to logger ``dispatchio.tcp`` for the block."""
    return _watching_logs("dispatchio.tcp")


async def send_hostile_input(url: str, *, linger: float = 2.0) -> None:
    """Feed a live ``tcp://`` process malformed input, each kind on a fresh connection.

    Before a handshake: random bytes, a length prefix where the hello belongs, a hello
    with a body that is not JSON, an empty connection. After a valid handshake (as the
    raw peer "zz-hostile"): an oversized length, a truncated frame, data after the
    goodbye. Each connection lingers (at most ``linger`` seconds) until the receiver
    drops it.
    """
    bad_hello = PREFIX.pack(MAGIC, VERSION, 9) + b"{not json"
    before = [random.randbytes(4096), encode_header(GOODBYE - 1) + b"x" * 64, bad_hello, b""]
    after = [
        encode_header(GOODBYE - 1) + b"x" * 64,
        encode_header(1000) + b"truncated",
        frame(b"fine") + goodbye() + b"more",
    ]
    for payload, handshake in [(p, False) for p in before] + [(p, True) for p in after]:
        async with await raw_connect(url) as stream:
            with anyio.move_on_after(linger):
                try:
                    if handshake:
                        await raw_handshake(stream, "zz-hostile")
                    if payload:
                        await stream.send(payload)
                    await stream.send_eof()
                    while True:  # until the receiver drops us
                        await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass
