"""TCP transport: peer-to-peer anyio streams between dispatchers.

Features:
    * Length-prefixed frames (``u32`` big-endian), FIFO per peer, at most once, whole.
      A frame's length is checked against ``max_frame_size`` before anything is
      allocated for it.
    * A handshake carrying a protocol version, the process ID, its incarnation and its
      URLs; optional shared-secret authentication (HMAC-SHA256 challenge-response: the
      secret never goes on the wire) and optional TLS (an `ssl.SSLContext`).
    * Exactly one link per pair of processes, even when both dial each other, so frames
      to a peer never overtake each other.
    * Reconnection with exponential backoff and jitter, until `TcpTransport.aclose`.
    * Writes are batched only while the link is busy; there is no timer. On asyncio
      without TLS the link runs on an `asyncio.BufferedProtocol` once its handshake is
      done (`_FastPath`): the first frame of an event-loop pass is written at once, the
      frames sent after it in that pass go out together when the pass ends, and frames
      are parsed out of a preallocated receive buffer and handed to the core as the
      socket gives them, without a task in between. Elsewhere (trio, TLS) one reader and
      one writer task per link move the frames; frames queued while a write is in
      progress go out as one write.
    * A bounded outbox per peer (on the asyncio fast path: the bytes asyncio has not
      written yet): over ``max_outbox_bytes``, `TcpTransport.send` raises
      `OutboxFullError` instead of growing memory.
    * Works on asyncio and trio.

URL format:
    ``tcp://host:port``. To listen, the host defaults to ``127.0.0.1`` and port ``0``
    picks a free port (``serve`` reports the port actually bound). To connect, the port
    is required. IPv6 hosts go in brackets: ``tcp://[::1]:7400``. Query parameters are
    options (``tcp://127.0.0.1:7400?max_frame_size=65536``).

Options (`TcpOptions`):
    ``secret``, ``ssl_context``, ``ssl_client_context``, ``handshake_timeout``,
    ``reconnect_min``, ``reconnect_max``, and the common ``max_frame_size``,
    ``max_outbox_bytes`` and ``close_timeout``; each is described on its field.

Limitations:
    * No heartbeats at this level: a silently dead peer (no FIN, no RST) is noticed by
      the core's failure detector, not by the transport.
    * Frames still in the outbox when a link breaks are dropped (the core is told by
      ``peer_down``); nothing is replayed on the next link.
    * On the asyncio fast path the core's frame handling (and so a synchronous message
      callback the core runs at once) runs in a protocol callback, outside any task.
    * A peer whose handshake fails (wrong secret, another version, garbage) is dropped
      and logged on logger ``dispatchio.tcp``; a dialer keeps retrying with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import hmac
import logging
import random
import secrets
import ssl
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream
from pydantic import Field, model_validator

from dispatchio._errors import (
    MessageTooLargeError,
    OutboxFullError,
    TransportConfigError,
    TransportError,
)
from dispatchio._message import ListenerId
from dispatchio.transport import PeerHello, Transport, TransportHandler, TransportOptions
from dispatchio_tcp._framing import (
    GOODBYE,
    HEADER,
    MAX_FRAME_LIMIT,
    FrameDecoder,
    FrameError,
    encode_header,
    goodbye,
)
from dispatchio_tcp._handshake import (
    NONCE_SIZE,
    PREFIX,
    PROOF_SIZE,
    HandshakeError,
    Hello,
    decode_body,
    decode_prefix,
    encode_hello,
    make_proof,
)

__all__ = ["TcpOptions", "TcpTransport"]

logger = logging.getLogger("dispatchio.tcp")

DEFAULT_HOST = "127.0.0.1"
_RECEIVE_SIZE = 256 * 1024
# The asyncio fast path: the receive ring's usual size, the free room kept at its end,
# and the largest frame copied behind its header into one write.
_RING_SIZE = 256 * 1024
_MIN_FREE = 64 * 1024
_JOIN_LIMIT = 64 * 1024
_ACCEPT = b"\x01"
_REJECT = b"\x00"
# What a broken or misbehaving connection raises; anything else is a bug and propagates.
_LINK_ERRORS = (
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
    TimeoutError,
    TransportError,
)


class _Duplicate(Exception):
    """The handshake found a link to that peer already; the new connection is closed."""

    def __init__(self, process: ListenerId) -> None:
        super().__init__(process)
        self.process = process


class _SelfDial(HandshakeError):
    """A dial reached this very process; dialing that URL again is pointless."""


class TcpOptions(TransportOptions):
    """Options of the TCP transport (all optional)."""

    max_frame_size: int = Field(
        default=1 << 20,
        ge=1024,
        le=MAX_FRAME_LIMIT,
        description="Largest frame accepted or sent, in bytes; checked before allocating.",
    )
    secret: str | None = Field(
        default=None,
        min_length=1,
        repr=False,
        description=(
            "Shared secret every peer must prove it knows (HMAC-SHA256 over fresh nonces; "
            "never sent). None: no authentication."
        ),
    )
    ssl_context: ssl.SSLContext | None = Field(
        default=None,
        description=(
            "TLS for accepted connections, and for dialing too unless ssl_client_context "
            "is set. None: plain TCP."
        ),
    )
    ssl_client_context: ssl.SSLContext | None = Field(
        default=None,
        description="TLS for connections this process dials (default: ssl_context).",
    )
    handshake_timeout: float = Field(
        default=5.0, gt=0, description="Seconds a new connection has to finish its handshake."
    )
    reconnect_min: float = Field(
        default=0.05, gt=0, description="First delay, in seconds, before dialing a peer again."
    )
    reconnect_max: float = Field(
        default=2.0, gt=0, description="Longest delay, in seconds, between two dial attempts."
    )

    @model_validator(mode="after")
    def _check(self) -> TcpOptions:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be below reconnect_min")
        server, client = self.ssl_context, self.ssl_client_context or self.ssl_context
        if server is not None and server.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise ValueError("ssl_context is a client-only context (PROTOCOL_TLS_CLIENT)")
        if client is not None and client.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ValueError(
                "ssl_context is a server-only context; set ssl_client_context for dialing"
            )
        if self.ssl_client_context is not None and self.ssl_context is None:
            raise ValueError("ssl_client_context needs ssl_context (peers dial both ways)")
        return self


def parse_url(url: str, *, listening: bool) -> tuple[str, int]:
    """``(host, port)`` of a ``tcp://`` URL.

    Raises:
        TransportConfigError: another scheme, a path, or a missing or bad port.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransportConfigError(f"{url!r}: {exc}") from exc
    if parts.scheme != TcpTransport.scheme:
        raise TransportConfigError(f"{url!r} is not a tcp:// URL")
    if parts.path not in ("", "/"):
        raise TransportConfigError(f"{url!r}: a tcp:// URL has no path")
    if port is None:
        if not listening:
            raise TransportConfigError(f"{url!r}: missing port")
        port = 0
    return parts.hostname or DEFAULT_HOST, port


def format_url(host: str, port: int) -> str:
    """``tcp://host:port``, with an IPv6 host in brackets."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


@dataclass(eq=False)
class _Link:
    """One handshaken connection to one peer."""

    hello: PeerHello
    stream: anyio.abc.ByteStream
    leftover: bytes
    outbox: list[bytes] = field(default_factory=list)
    outbox_bytes: int = 0
    wake: anyio.Event = field(default_factory=anyio.Event)
    closing: bool = False
    reason: str = ""
    finished: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: The asyncio data path, once the link runs on it (see `_FastPath`).
    fast: _FastPath | None = None

    def abort(self, reason: str) -> None:
        self.reason = self.reason or reason
        if self.fast is not None:
            self.fast.stop()
        self.scope.cancel()


class _FastPath(asyncio.BufferedProtocol):
    """A link's data path on asyncio without TLS: the socket's protocol after the handshake.

    Reading: the event loop reads straight into a preallocated ring (`get_buffer`), and
    `buffer_updated` hands every whole frame to the core at once, no task in between. A
    frame's length is checked against ``max_frame_size`` before the ring grows for it
    (up to that size; it shrinks back once the large frame is parsed).
    Writing: `send` writes the first frame of an event-loop pass at once and holds the
    ones sent after it in that pass until the pass ends; while the socket is busy
    asyncio buffers the writes. Held frames plus asyncio's buffer are the outbox that
    ``max_outbox_bytes`` bounds. The link's task (`TcpTransport._watch_fast`) only waits
    for the end, which this protocol reports through ``link.wake``; it then closes the
    socket, and the link ends as on the stream path (peer_down once, same reasons).
    """

    def __init__(
        self,
        link: _Link,
        transport: asyncio.Transport,
        received: Callable[[ListenerId, bytes], None],
        options: TcpOptions,
    ) -> None:
        self.link = link
        self.process = link.hello.process
        self.transport = transport
        self.write = transport.write
        self.buffered = transport.get_write_buffer_size
        self.call_soon = asyncio.get_running_loop().call_soon
        self.corked = False  # a frame was written in this loop pass already
        self.pending: list[bytes] = []  # frames written after it, held until the pass ends
        self.held = 0  # their bytes
        self.received = received
        self.max_frame = options.max_frame_size
        self.max_outbox = options.max_outbox_bytes
        self.ring = bytearray(_RING_SIZE)
        self.view = memoryview(self.ring)
        self.start = 0  # first byte not yet parsed
        self.end = 0  # end of the bytes received
        #: True once the link is over: nothing more is delivered or written.
        self.ended = False
        #: asyncio's flow control: the write buffer is over its high-water mark.
        self.writing_paused = False

    # ------------------------------------------------------------------ writing

    def send(self, frame: bytes, size: int) -> None:
        """Write one frame (size checked by the caller); see `TcpTransport.send`.

        The first frame of a loop pass is written at once; the frames that follow it
        in the same pass are held and written together when the pass ends (`_uncork`),
        so a burst costs two writes rather than one per frame, with no timer.
        """
        if self.ended:
            return  # accepted, then lost with the link: peer_down is on its way
        held = self.buffered() + self.held
        if held and held + size + 4 > self.max_outbox:
            raise _outbox_full(self.process, held, self.max_outbox)
        if self.corked:
            self.pending += (encode_header(size), frame)
            self.held += size + 4
            return
        self.corked = True
        self.call_soon(self._uncork)
        if size <= _JOIN_LIMIT:
            self.write(encode_header(size) + frame)
        else:
            self.write(encode_header(size))
            self.write(frame)

    def _uncork(self) -> None:
        self.corked = False
        self.flush()

    def flush(self) -> None:
        """Write the frames held back in this loop pass."""
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.held = 0
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
        """Deliver every whole frame in ``ring[start:end]``; keep the rest."""
        ring = self.ring
        pos = self.start
        need = HEADER.size
        unpack = HEADER.unpack_from
        received = self.received
        process = self.process
        try:
            while end - pos >= HEADER.size:
                (length,) = unpack(ring, pos)
                if length > self.max_frame:
                    if length == GOODBYE and end - pos == HEADER.size:
                        self.end_link("closed by the peer")
                        return
                    raise FrameError(
                        "data after the end of the frame stream"
                        if length == GOODBYE
                        else f"frame of {length} bytes exceeds max_frame_size {self.max_frame}"
                    )
                stop = pos + HEADER.size + length
                if stop > end:
                    need = stop - pos
                    break
                frame = bytes(self.view[pos + HEADER.size : stop])
                pos = stop
                try:
                    received(process, frame)
                except Exception:
                    logger.exception("frame handler failed for process %r", process)
                if self.ended:  # the handler ended the link
                    return
        except FrameError as exc:
            self.link.reason = f"protocol error: {exc}"
            logger.warning("dropped the link to process %r: %s", process, exc)
            self.end_link(self.link.reason)
            return
        self._make_room(pos, end, need)

    def _make_room(self, pos: int, end: int, need: int) -> None:
        """Keep the unparsed bytes ``[pos, end)`` and room after them for ``need`` bytes."""
        have = end - pos
        size = len(self.ring)
        if not have:
            pos = end = 0
            if size > _RING_SIZE:  # a large frame is done: give the memory back
                self.ring = bytearray(_RING_SIZE)
                self.view = memoryview(self.ring)
        elif need > size:
            # need = header + a length already checked against max_frame_size.
            ring = bytearray(max(need, min(2 * size, self.max_frame + HEADER.size)))
            ring[:have] = self.view[pos:end]
            self.ring, self.view = ring, memoryview(ring)
            pos, end = 0, have
        elif pos and (pos + need > size or size - end < _MIN_FREE):
            self.ring[:have] = self.ring[pos:end]
            pos, end = 0, have
        self.start, self.end = pos, end

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
        self.end_link("connection closed" if exc is None else f"connection lost: {_describe(exc)}")

    # ------------------------------------------------------------------ the end

    def end_link(self, reason: str) -> None:
        """The link is over (``reason`` unless one is set): wake its task, deliver no more."""
        if not self.ended:
            self.link.reason = self.link.reason or reason
            self.stop()
            self.link.wake.set()

    def stop(self) -> None:
        """Deliver and write nothing more (the link's task closes the socket)."""
        self.ended = True
        self.start = self.end = 0
        self.pending.clear()
        self.held = 0


class TcpTransport(Transport):
    """Frames over TCP (optionally TLS) between dispatchers; see the module docstring."""

    scheme: ClassVar[str] = "tcp"
    Options: ClassVar[type[TransportOptions]] = TcpOptions
    options: TcpOptions

    def __init__(self, options: TransportOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        if not isinstance(self.options, TcpOptions):
            raise TransportConfigError(
                f"tcp transport: options must be TcpOptions, not {type(self.options).__name__}"
            )
        self._links: dict[ListenerId, _Link] = {}
        self._dials: dict[tuple[str, int], str] = {}
        self._pending_dials: list[tuple[str, int]] = []
        self._handler: TransportHandler | None = None
        self._local: PeerHello | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._aux: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._stopped: anyio.Event | None = None
        self._serving = False
        # Which process each dialed address turned out to be.
        self._dialed: dict[tuple[str, int], ListenerId] = {}

    # ------------------------------------------------------------------ public API

    async def serve(
        self,
        handler: TransportHandler,
        local: PeerHello,
        *,
        listen: Sequence[str],
        task_status: anyio.abc.TaskStatus[tuple[str, ...]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Bind ``listen``, report the bound URLs, serve until `aclose` or cancellation."""
        if self._serving or self._closing:
            raise TransportError("this tcp transport was started or closed already")
        addresses = [parse_url(url, listening=True) for url in listen]
        self._serving = True
        self._stopped = stopped = anyio.Event()
        listeners: list[anyio.abc.Listener[anyio.abc.SocketStream]] = []
        bound: list[str] = []
        try:
            for (host, port), url in zip(addresses, listen, strict=True):
                try:
                    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
                except OSError as exc:
                    raise TransportError(f"cannot listen on {url!r}: {exc}") from exc
                listeners.append(multi)
                for sub in multi.listeners:
                    sock_host, sock_port = _host_port(sub.extra(SocketAttribute.local_address))
                    bound.append(format_url(sock_host, sock_port))
            self._handler = handler
            # Peers are told the bound URLs (port 0 resolved) in place of the listen
            # specs; any other URL the core advertises (e.g. a public name) is kept.
            extra = tuple(url for url in local.urls if url not in listen and url not in bound)
            self._local = local._replace(urls=(*bound, *extra))
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self._run_aux, listeners)
                task_status.started(tuple(bound))
                await anyio.sleep_forever()
        finally:
            self._closing = True
            for listener in listeners:
                await _close_quietly(listener)
            stopped.set()

    async def connect(self, url: str) -> None:
        """Queue a dial to ``url``; it retries with backoff and reconnects after loss."""
        address = parse_url(url, listening=False)
        if self._closing:
            raise TransportError("the tcp transport is closed")
        if address in self._dials:
            return
        self._dials[address] = url
        if self._aux is None:
            self._pending_dials.append(address)
        else:
            self._aux.start_soon(self._dial_loop, address, name=f"dispatchio.tcp dial {url}")

    def send(self, process: ListenerId, frame: bytes) -> None:
        """Queue ``frame`` for ``process`` without blocking (see `Transport.send`)."""
        link = self._links.get(process)
        if link is None or link.closing:
            if self._closing:
                raise TransportError("the tcp transport is closed")
            raise TransportError(f"no tcp link to process {process!r}")
        size = len(frame)
        if size > self.options.max_frame_size:
            raise MessageTooLargeError(
                f"frame of {size} bytes exceeds max_frame_size {self.options.max_frame_size}"
            )
        fast = link.fast
        if fast is not None:
            fast.send(frame, size)
            return
        held = link.outbox_bytes
        if held and held + size + 4 > self.options.max_outbox_bytes:
            raise _outbox_full(process, held, self.options.max_outbox_bytes)
        link.outbox.append(encode_header(size))
        link.outbox.append(frame)
        link.outbox_bytes = held + size + 4
        if not held:
            # The writer waits only once it has found the outbox empty.
            link.wake.set()

    async def aclose(self) -> None:
        """Flush what was accepted (up to ``close_timeout``), close every link, stop."""
        if self._closing:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._closing = True
        try:
            if self._aux is not None:
                self._aux.cancel_scope.cancel()
            links = list(self._links.values())
            for link in links:
                link.closing = True
                link.wake.set()
            with anyio.move_on_after(self.options.close_timeout):
                for link in links:
                    await link.finished.wait()
        finally:
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
        if self._stopped is not None:
            await self._stopped.wait()

    async def __aenter__(self) -> TcpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------- accept and dial

    async def _run_aux(
        self,
        listeners: list[anyio.abc.Listener[anyio.abc.SocketStream]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        # Accept loops, dial loops and handshakes live here, so aclose() can stop them
        # all at once while the links (in the outer group) flush.
        async with anyio.create_task_group() as aux:
            self._aux = aux
            for listener in listeners:
                aux.start_soon(listener.serve, self._accepted, aux)
            for address in self._pending_dials:
                aux.start_soon(self._dial_loop, address)
            self._pending_dials.clear()
            task_status.started()
            await anyio.sleep_forever()

    async def _accepted(self, stream: anyio.abc.SocketStream) -> None:
        address = _peer_address(stream)
        opts = self.options
        byte_stream: anyio.abc.ByteStream = stream
        try:
            with anyio.fail_after(opts.handshake_timeout):
                if opts.ssl_context is not None:
                    byte_stream = await TLSStream.wrap(
                        stream,
                        server_side=True,
                        ssl_context=opts.ssl_context,
                        standard_compatible=False,
                    )
                link = await self._handshake(byte_stream, dialed=False, address=address)
        except _Duplicate:
            return
        except _LINK_ERRORS as exc:
            logger.warning("dropped connection from %s: %s", address, _describe(exc))
            await _close_quietly(byte_stream)
            return
        except BaseException:
            await _close_quietly(byte_stream)
            raise
        self._start_link(link)

    async def _dial_loop(self, address: tuple[str, int]) -> None:
        url = self._dials[address]
        opts = self.options
        delay = opts.reconnect_min
        host, port = address
        context = opts.ssl_client_context or opts.ssl_context
        while True:
            existing = self._link_for(address)
            if existing is not None:
                await existing.finished.wait()
                delay = opts.reconnect_min
                continue
            try:
                with anyio.fail_after(opts.handshake_timeout):
                    stream: anyio.abc.ByteStream
                    if context is None:
                        stream = await anyio.connect_tcp(host, port)
                    else:
                        stream = await anyio.connect_tcp(
                            host, port, ssl_context=context, tls_standard_compatible=False
                        )
                    try:
                        link = await self._handshake(stream, dialed=True, address=url)
                    except BaseException:
                        await _close_quietly(stream)
                        raise
            except _Duplicate as exc:
                # The peer dialed us first: wait for that link to end before trying again.
                self._dialed[address] = exc.process
                duplicate = self._links.get(exc.process)
                if duplicate is not None:
                    await duplicate.finished.wait()
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, opts.reconnect_max)
                continue
            except _SelfDial:
                logger.warning("not dialing %s: it is this process's own address", url)
                return
            except _LINK_ERRORS as exc:
                # Unreachable peers are routine (starting, restarting); a refused
                # handshake is news.
                news = isinstance(exc, (HandshakeError, ssl.SSLError))
                log = logger.warning if news else logger.debug
                log("dialing %s failed: %s", url, _describe(exc))
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, opts.reconnect_max)
                continue
            delay = opts.reconnect_min
            self._dialed[address] = link.hello.process
            self._start_link(link)
            await link.finished.wait()
            await anyio.sleep(delay * random.uniform(0.5, 1.0))

    def _link_for(self, address: tuple[str, int]) -> _Link | None:
        known = self._dialed.get(address)
        if known is not None and known in self._links:
            return self._links[known]
        for link in self._links.values():
            for url in link.hello.urls:
                try:
                    if parse_url(url, listening=False) == address:
                        return link
                except TransportConfigError:
                    continue
        return None

    # --------------------------------------------------------------------- handshake

    async def _handshake(
        self, stream: anyio.abc.ByteStream, *, dialed: bool, address: str
    ) -> _Link:
        """Run the handshake; return the link, installed and announced with peer_up.

        Raises _Duplicate (stream closed) when the pair has a link already, and
        HandshakeError (or a stream error) when the peer is refused.
        """
        local = self._local
        assert local is not None
        secret = self.options.secret
        mine = Hello(
            local.process,
            local.incarnation,
            local.urls,
            secrets.token_bytes(NONCE_SIZE),
            secret is not None,
        )
        await stream.send(encode_hello(mine))
        reader = BufferedByteReceiveStream(stream)
        length = decode_prefix(await reader.receive_exactly(PREFIX.size))
        theirs = decode_body(await reader.receive_exactly(length))
        if str(theirs.process) == str(local.process):
            raise _SelfDial(f"{address} is this process ({local.process!r}) itself")
        if theirs.auth != mine.auth:
            raise HandshakeError(
                f"process {theirs.process!r} at {address} "
                + ("has no secret" if mine.auth else "requires a secret")
            )
        if secret is not None:
            await stream.send(make_proof(secret, mine, theirs, prover_dialed=dialed))
            proof = await reader.receive_exactly(PROOF_SIZE)
            expected = make_proof(secret, theirs, mine, prover_dialed=not dialed)
            if not hmac.compare_digest(proof, expected):
                raise HandshakeError(
                    f"process {theirs.process!r} at {address} failed authentication"
                )
        hello = PeerHello(theirs.process, theirs.incarnation, theirs.urls)
        if str(local.process) < str(theirs.process):
            # We arbitrate this pair: the link we already have wins, unless the peer
            # restarted (a new incarnation), so there is never more than one.
            existing = self._links.get(theirs.process)
            if existing is not None and existing.hello.incarnation == theirs.incarnation:
                await stream.send(_REJECT)
                await _close_quietly(stream)
                logger.debug("closed a duplicate link to %r", theirs.process)
                raise _Duplicate(theirs.process)
            # The verdict goes out first, through the outbox, ahead of any frame.
            link = _Link(hello, stream, reader.buffer, outbox=[_ACCEPT], outbox_bytes=1)
        else:
            verdict = await reader.receive_exactly(1)
            if verdict != _ACCEPT:
                await _close_quietly(stream)
                logger.debug("peer %r closed a duplicate link", theirs.process)
                raise _Duplicate(theirs.process)
            link = _Link(hello, stream, reader.buffer)
        self._install(link)
        self._take_fast_path(link)
        return link

    def _install(self, link: _Link) -> None:
        handler = self._handler
        assert handler is not None
        process = link.hello.process
        old = self._links.get(process)
        self._links[process] = link
        if old is not None:
            old.abort("replaced by a new link")
            _notify(handler.peer_down, process, "replaced by a new link")
        logger.info("link to process %r is up", process)
        _notify(handler.peer_up, link.hello)

    def _take_fast_path(self, link: _Link) -> None:
        """On asyncio without TLS, move the link's data path onto a `_FastPath`.

        Done right after peer_up, before the event loop runs again: frames the core
        queued from peer_up (and the arbitration verdict) go out first, then the bytes
        the handshake read ahead are parsed, then the socket is read by the protocol.
        Anything unexpected (trio, TLS, another anyio internals layout, a closing
        connection) keeps the anyio stream path.
        """
        stream = link.stream
        transport = getattr(stream, "_transport", None)
        anyio_protocol = getattr(stream, "_protocol", None)
        read_queue = getattr(anyio_protocol, "read_queue", None)
        if (
            not isinstance(transport, asyncio.Transport)
            or not isinstance(read_queue, collections.deque)
            or transport.is_closing()
            or getattr(anyio_protocol, "exception", None) is not None
            or self._links.get(link.hello.process) is not link
        ):
            return
        assert self._handler is not None
        ahead = b"".join([link.leftover, *read_queue])
        read_queue.clear()
        at_eof = bool(getattr(anyio_protocol, "is_at_eof", False))
        fast = _FastPath(link, transport, self._handler.frame_received, self.options)
        transport.set_protocol(fast)
        transport.set_write_buffer_limits()  # anyio's stream set them to 0
        link.fast = fast
        link.leftover = b""
        if link.outbox:
            fast.write(b"".join(link.outbox))
            link.outbox.clear()
            link.outbox_bytes = 0
        fast.feed(ahead)
        if at_eof:
            fast.end_link("connection closed by the peer")
            return
        # anyio leaves reading paused between receive() calls. Resume it in a context
        # where anyio knows it runs on asyncio: the read callbacks run the core's frame
        # handling outside any task.
        if transport.is_reading():
            transport.pause_reading()
        _asyncio_context().run(transport.resume_reading)

    # ------------------------------------------------------------------------- links

    def _start_link(self, link: _Link) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._run_link, link, name=f"dispatchio.tcp {link.hello.process!r}")

    async def _run_link(self, link: _Link) -> None:
        try:
            with link.scope:
                if link.fast is not None:
                    await self._watch_fast(link, link.fast)
                    return
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_loop, link)
                    await self._read_loop(link)
                    tg.cancel_scope.cancel()
        finally:
            if link.fast is not None:
                link.fast.stop()
            process = link.hello.process
            if self._links.get(process) is link:
                del self._links[process]
                reason = link.reason or "link closed"
                logger.info("link to process %r is down: %s", process, reason)
                assert self._handler is not None
                _notify(self._handler.peer_down, process, reason)
            link.outbox.clear()
            link.outbox_bytes = 0
            await _close_quietly(link.stream)
            link.finished.set()

    async def _watch_fast(self, link: _Link, fast: _FastPath) -> None:
        """Wait for a fast-path link to end; on a graceful close, say goodbye first.

        The goodbye goes behind every frame accepted before it (asyncio's write buffer
        keeps order); the link then ends when the peer, having read it all, closes.
        """
        said_goodbye = False
        while not fast.ended:
            if link.closing and not said_goodbye:
                link.reason = link.reason or "closed by this process"
                fast.flush()
                fast.write(goodbye())
                said_goodbye = True
            link.wake = anyio.Event()
            await link.wake.wait()

    async def _read_loop(self, link: _Link) -> None:
        assert self._handler is not None
        received = self._handler.frame_received
        process = link.hello.process
        decoder = FrameDecoder(self.options.max_frame_size)
        receive = link.stream.receive
        chunk = link.leftover
        try:
            while True:
                for frame in decoder.feed(chunk):
                    try:
                        received(process, frame)
                    except Exception:
                        logger.exception("frame handler failed for process %r", process)
                if decoder.finished:
                    link.reason = link.reason or "closed by the peer"
                    return
                chunk = await receive(_RECEIVE_SIZE)
        except FrameError as exc:
            link.reason = f"protocol error: {exc}"
            logger.warning("dropped the link to process %r: %s", process, exc)
        except anyio.EndOfStream:
            link.reason = link.reason or "connection closed by the peer"
        except _LINK_ERRORS as exc:
            link.reason = link.reason or f"connection lost: {_describe(exc)}"

    async def _write_loop(self, link: _Link) -> None:
        send = link.stream.send
        try:
            while True:
                if not link.outbox:
                    if link.closing:
                        link.reason = link.reason or "closed by this process"
                        await send(goodbye())
                        return
                    link.wake = anyio.Event()
                    await link.wake.wait()
                    continue
                # Whatever accumulated while the previous write was in progress goes
                # out as one write: batching exactly when the link is busy.
                batch, link.outbox = link.outbox, []
                size = link.outbox_bytes
                await send(b"".join(batch))
                link.outbox_bytes -= size
        except _LINK_ERRORS as exc:
            link.abort(f"connection lost: {_describe(exc)}")


def _outbox_full(process: ListenerId, held: int, limit: int) -> OutboxFullError:
    return OutboxFullError(
        f"outbox to process {process!r} holds {held} bytes (max_outbox_bytes {limit})"
    )


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


def _notify(callback: Any, *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("transport handler %r raised", callback)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _peer_address(stream: anyio.abc.SocketStream) -> str:
    try:
        return format_url(*_host_port(stream.extra(SocketAttribute.remote_address)))
    except (OSError, anyio.TypedAttributeLookupError, ValueError):
        return "an unknown address"


def _host_port(address: Any) -> tuple[str, int]:
    # IP sockets give (host, port) or (host, port, flowinfo, scope_id).
    return str(address[0]), int(address[1])


async def _close_quietly(resource: anyio.abc.AsyncResource) -> None:
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(1),
        contextlib.suppress(*_LINK_ERRORS),
    ):
        await resource.aclose()
