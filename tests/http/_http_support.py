"""Helpers for the dispatchio-http transport tests: a recording handler, running nodes."""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import trustme

from dispatchio import ListenerId, MessageDispatcher
from dispatchio.transport import PeerHello
from dispatchio_http import HttpOptions, HttpsTransport, HttpTransport

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
        raise AssertionError("the transport asked for a dispatcher with the gateway off")

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
    transport: HttpTransport
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
    listen: tuple[str, ...] = ("http://127.0.0.1:0",),
    handler: Recorder | None = None,
    **options: Any,
) -> AsyncIterator[Node]:
    """Serve an `HttpTransport` (https for https listen URLs) for the block, then close it.

    The gateway is off: a `Recorder` has no dispatcher to give it.
    """
    opts = HttpOptions.model_validate({"gateway": False, **options})
    tls = any(url.startswith("https") for url in listen) or bool(
        opts.ssl_context or opts.ssl_client_context
    )
    transport = HttpsTransport(opts) if tls else HttpTransport(opts)
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


async def linked(a: Node, b: Node) -> None:
    """Dial ``a`` from ``b`` and wait until both sides report the link."""
    await b.transport.connect(a.url)
    await a.handler.wait_up(b.process)
    await b.handler.wait_up(a.process)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and a client context trusting it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


@dataclass
class LogWatcher(logging.Handler):
    """Collects records of logger ``dispatchio.http``; a test can wait for one."""

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

    async def wait_for(self, text: str) -> str:
        """Return the first WARNING-or-worse message containing ``text``."""
        while True:
            for message in self.messages():
                if text in message:
                    return message
            await self._changed.wait()


@asynccontextmanager
async def watching_logs(name: str = "dispatchio") -> AsyncIterator[LogWatcher]:
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
