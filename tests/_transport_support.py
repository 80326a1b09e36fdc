"""What the transport tests of every scheme share: a node served with a `RecordingHandler`,
linking two nodes, TLS contexts for 127.0.0.1, and waiting on log records."""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from dispatchio.testing import RecordingHandler
from dispatchio.transport import PeerHello, Transport

T = TypeVar("T", bound=Transport)

_incarnations = itertools.count(1)


@dataclass
class Node(Generic[T]):
    """A running transport with its recording handler."""

    process: str
    transport: T
    handler: RecordingHandler
    urls: tuple[str, ...]
    incarnation: int

    @property
    def url(self) -> str:
        return self.urls[0]


@asynccontextmanager
async def serving(
    transport: T, process: str, listen: tuple[str, ...], handler: RecordingHandler | None
) -> AsyncIterator[Node[T]]:
    """Serve ``transport`` as ``process`` (a fresh incarnation) for the block, then close it."""
    handler = RecordingHandler() if handler is None else handler
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


async def linked(a: Node[T], b: Node[T]) -> None:
    """Dial ``a`` from ``b`` and wait until both sides report the link."""
    await b.transport.connect(a.url)
    await a.handler.wait_up(b.process)
    await b.handler.wait_up(a.process)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and a client context trusting it."""
    import trustme  # a test dependency of the TLS transports only

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


@dataclass
class LogWatcher(logging.Handler):
    """Collects log records; a test can wait for one."""

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
async def watching_logs(name: str) -> AsyncIterator[LogWatcher]:
    """Attach a `LogWatcher` to logger ``name`` (and so its children) for the block."""
    watcher = LogWatcher()
    logger = logging.getLogger(name)
    logger.addHandler(watcher)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(old_level)


async def round_trip(receiver: Node[T], peer: Node[T], tag: bytes) -> None:
    """One frame each way between ``receiver`` and its well-behaved ``peer``; asserts
    that both arrive."""
    seen_by_receiver = len(receiver.handler.frames.get(peer.process, ()))
    seen_by_peer = len(peer.handler.frames.get(receiver.process, ()))
    peer.transport.send(receiver.process, tag)
    receiver.transport.send(peer.process, tag)
    got = await receiver.handler.wait_frames(peer.process, seen_by_receiver + 1)
    back = await peer.handler.wait_frames(receiver.process, seen_by_peer + 1)
    assert got[-1] == back[-1] == tag


async def send_until_outbox_full(transport: Transport, process: str) -> None:
    """Send 16 KiB frames to ``process``, a peer that stopped reading, until ``send``
    raises (`OutboxFullError`, the caller checks); fails the test if 1.6 GB go out."""
    for _ in range(100_000):
        transport.send(process, bytes(16 * 1024))
        await anyio.lowlevel.checkpoint()  # let the writer fill the socket
    raise AssertionError(f"the outbox to {process!r} never filled")


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (from /proc; Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


async def served_within_a_second(urls: list[str]) -> None:
    """A new dispatcher connects to ``urls``, sees the ``echo`` listener there and gets
    its answer, all within 1 s (the bound the hostile-peer tests promise)."""
    from dispatchio import Message, MessageDispatcher, make_plugin_manager

    dispatcher = MessageDispatcher("good", connect=urls, plugins=make_plugin_manager())
    with anyio.fail_after(1):
        async with dispatcher:
            await dispatcher.wait_for_listener("echo")
            reply = await dispatcher.request(Message("ping", "hello", destination="echo"))
    assert reply.content == "hello"
    assert reply.source == "echo"
