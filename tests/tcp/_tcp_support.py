"""Helpers for the dispatchio-tcp tests: a recording handler, running nodes, raw peers."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from dispatchio import ListenerId, MessageDispatcher
from dispatchio.transport import PeerHello
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

_incarnations = itertools.count(1)


class Recorder:
    """A `TransportHandler` that records every call and lets a test wait for a state."""

    def __init__(self) -> None:
        self.ups: list[PeerHello] = []
        self.downs: list[tuple[ListenerId, str]] = []
        self.frames: dict[ListenerId, list[bytes]] = {}
        self.up: dict[ListenerId, PeerHello] = {}
        self.dial_errors: list[tuple[str, str]] = []
        self._changed = anyio.Event()

    @property
    def dispatcher(self) -> MessageDispatcher:
        """TCP never asks: it serves dispatchers only."""
        raise AttributeError("a Recorder runs no dispatcher")

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

    def dial_failed(self, url: str, error: str) -> None:
        self.dial_errors.append((url, error))
        self._notify()

    async def wait(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds (the caller bounds the wait)."""
        while not condition():
            await self._changed.wait()

    async def wait_up(self, process: ListenerId) -> PeerHello:
        await self.wait(lambda: process in self.up)
        return self.up[process]

    async def wait_down(self, process: ListenerId) -> None:
        await self.wait(lambda: process not in self.up)

    async def wait_frames(self, process: ListenerId, count: int) -> list[bytes]:
        await self.wait(lambda: len(self.frames.get(process, ())) >= count)
        return self.frames[process]


@dataclass
class Node:
    """A running transport with its recorder."""

    process: str
    transport: TcpTransport
    handler: Recorder
    urls: tuple[str, ...]
    incarnation: int

    @property
    def url(self) -> str:
        return self.urls[0]


@asynccontextmanager
async def running(
    process: str,
    *,
    listen: tuple[str, ...] = ("tcp://127.0.0.1:0",),
    handler: Recorder | None = None,
    **options: object,
) -> AsyncIterator[Node]:
    """Serve a `TcpTransport` for the duration of the block, then close it."""
    transport = TcpTransport(TcpOptions.model_validate(options))
    handler = Recorder() if handler is None else handler
    incarnation = next(_incarnations)
    local = PeerHello(process, incarnation, ())
    async with anyio.create_task_group() as tg:
        urls: tuple[str, ...] = await tg.start(
            partial(transport.serve, handler, local, listen=listen)
        )
        try:
            yield Node(process, transport, handler, urls, incarnation)
        finally:
            await transport.aclose()


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


@dataclass
class LogWatcher(logging.Handler):
    """Collects records of logger ``dispatchio.tcp``; a test can wait for one."""

    records: list[logging.LogRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self, logging.DEBUG)
        self._changed = anyio.Event()

    def __hash__(self) -> int:
        return id(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()
        self._changed = anyio.Event()

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    async def wait_for(self, text: str, level: int = logging.WARNING) -> str:
        """Return the first message of ``level`` or worse containing ``text``."""
        while True:
            for message in self.messages(level):
                if text in message:
                    return message
            await self._changed.wait()


@asynccontextmanager
async def watching_logs() -> AsyncIterator[LogWatcher]:
    """Attach a `LogWatcher` to logger ``dispatchio.tcp`` for the block."""
    watcher = LogWatcher()
    logger = logging.getLogger("dispatchio.tcp")
    logger.addHandler(watcher)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(old_level)


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
