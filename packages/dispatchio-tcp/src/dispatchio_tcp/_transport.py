"""The TCP transport: handshaken links between dispatchers, dialed and accepted.

`TcpTransport` documents what it does; this module keeps the links: accepting and
dialing (with one backoff), the handshake's I/O (its rules are `_handshake`'s), and the
two data paths of a link, the anyio stream loops (trio, TLS) and `_fastpath` (asyncio).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import random
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream

from dispatchio import ListenerId, TransportConfigError, TransportError
from dispatchio.transport import (
    PeerHello,
    Transport,
    TransportHandler,
    TransportOptions,
    describe_error,
)
from dispatchio_tcp._fastpath import FastPath, ReceiveBudget, adopt, describe, resume_reading
from dispatchio_tcp._framing import (
    HEADER,
    FrameDecoder,
    FrameError,
    encode_header,
    goodbye,
    outbox_full,
    too_large,
)
from dispatchio_tcp._handshake import (
    ACCEPT,
    NONCE_SIZE,
    PREFIX,
    PROOF_SIZE,
    HandshakeError,
    Hello,
    arbitrates,
    decode_body,
    decode_prefix,
    encode_hello,
    make_proof,
    verdict,
)
from dispatchio_tcp._options import SCHEME, TcpOptions, format_url, is_loopback, parse_url

__all__ = ["TcpOptions", "TcpTransport"]

logger = logging.getLogger("dispatchio.tcp")

_RECEIVE_SIZE = 256 * 1024
# At most one warning per this many seconds about handshakes closed to make room.
_EVICTION_LOG_INTERVAL = 10.0
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


class _Backoff:
    """Exponential backoff with jitter between ``reconnect_min`` and ``reconnect_max``."""

    def __init__(self, options: TcpOptions) -> None:
        self.low = options.reconnect_min
        self.high = options.reconnect_max
        self.delay = self.low

    def reset(self) -> None:
        self.delay = self.low

    async def wait(self) -> None:
        """Sleep for the current delay (jittered), then double it (up to the maximum)."""
        await anyio.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(self.delay * 2, self.high)


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
    #: The asyncio data path, once the link runs on it (see `_fastpath`).
    fast: FastPath | None = None

    def abort(self, reason: str) -> None:
        """End the link at once, without flushing (its task closes the socket)."""
        self.reason = self.reason or reason
        if self.fast is not None:
            self.fast.stop()
        self.outbox.clear()
        self.outbox_bytes = 0
        self.scope.cancel()

    def fast_ended(self, reason: str, override: bool) -> None:
        """The fast path found the link over: wake its task (`TcpTransport._watch_fast`)."""
        self.reason = reason if override else self.reason or reason
        self.wake.set()


class TcpTransport(Transport):
    """Frames over TCP (optionally TLS) between dispatchers: the ``tcp://`` transport.

    Features:
        * Length-prefixed frames (``u32`` big-endian), FIFO per peer, at most once,
          whole. A frame's length is checked against ``max_frame_size`` before anything
          is allocated for it.
        * A handshake carrying a protocol version, the process ID, its incarnation and
          its URLs; optional shared-secret authentication (HMAC-SHA256
          challenge-response: the secret never goes on the wire) and optional TLS (an
          `ssl.SSLContext`).
        * Exactly one link per pair of processes, even when both dial each other, so
          frames to a peer never overtake each other.
        * Reconnection with exponential backoff and jitter, until `aclose`; also after
          `disconnect`, when this side dialed the peer.
        * Writes are batched only while the link is busy; there is no timer. On asyncio
          without TLS the link runs on an `asyncio.BufferedProtocol` once its handshake
          is done: the first frame of an event-loop pass is written at once, the frames
          sent after it in that pass go out together when the pass ends, and frames are
          parsed out of a preallocated receive buffer and handed to the core as the
          socket gives them, without a task in between. Elsewhere (trio, TLS) one reader
          and one writer task per link move the frames; frames queued while a write is
          in progress go out as one write.
        * A bounded outbox per peer (on the asyncio fast path: the bytes asyncio has not
          written yet): over ``max_outbox_bytes``, `send` raises `OutboxFullError`
          instead of growing memory.
        * Works on asyncio and trio.

    URL format:
        ``tcp://host:port``. To listen, the host defaults to ``127.0.0.1`` and port
        ``0`` picks a free port (``serve`` reports the port actually bound). To connect,
        the port is required. IPv6 hosts go in brackets: ``tcp://[::1]:7400``. Query
        parameters are options (``tcp://127.0.0.1:7400?max_frame_size=65536``).

    Options (`TcpOptions`, where each is described with its default):
        ``secret``, ``ssl_context``, ``ssl_client_context``, ``handshake_timeout``,
        ``max_handshakes``, ``reconnect_min``, ``reconnect_max``, and the common ``max_frame_size``,
        ``max_outbox_bytes`` and ``close_timeout``.

    Limitations:
        * No heartbeats at this level: a silently dead peer (no FIN, no RST) is noticed
          by the core's failure detector, which then calls `disconnect`.
        * Frames still in the outbox when a link breaks are dropped (the core is told by
          ``peer_down``); nothing is replayed on the next link.
        * On the asyncio fast path the core's frame handling (and so a synchronous
          message callback the core runs at once) runs in a protocol callback, outside
          any task.
        * A peer whose handshake fails (wrong secret, another version, garbage) is
          dropped and logged on logger ``dispatchio.tcp``; a dialer keeps retrying with
          backoff.
    """

    scheme: ClassVar[str] = SCHEME
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
        opts = self.options
        #: Receive buffer held for incomplete large frames across links (both data paths).
        self.receive_budget = ReceiveBudget(
            opts.max_receive_bytes
            if opts.max_receive_bytes is not None
            else 64 * opts.max_frame_size
        )
        # Accepted connections still in their handshake, oldest first (max_handshakes).
        self._handshaking: dict[anyio.CancelScope, None] = {}
        #: Connections closed in their handshake to make room for newer ones.
        self.handshakes_evicted = 0
        self._evictions_unlogged = 0
        self._eviction_logged_at = -_EVICTION_LOG_INTERVAL

    # ------------------------------------------------------------------ public API

    async def serve(
        self,
        handler: TransportHandler,
        local: PeerHello,
        *,
        listen: Sequence[str],
        task_status: anyio.abc.TaskStatus[tuple[str, ...]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Bind ``listen``, report the bound URLs, serve until `aclose` or cancellation.

        Raises:
            TransportConfigError: a bad URL, or a host beyond loopback without ``secret``
                or ``ssl_context`` (unless ``insecure``), refused before binding.
            TransportError: a URL cannot be bound.
        """
        if self._serving or self._closing:
            raise TransportError("this tcp transport was started or closed already")
        addresses = [parse_url(url, listening=True) for url in listen]
        opts = self.options
        if opts.secret is None and opts.ssl_context is None and not opts.insecure:
            for (host, _), url in zip(addresses, listen, strict=True):
                if not is_loopback(host):
                    raise TransportConfigError(
                        f"refusing to listen on {url!r}: beyond loopback without"
                        " authentication any host that reaches it can join the mesh. Set the"
                        ' tcp option secret="..." (the same on every process; e.g.'
                        ' transport_options={"tcp": {"secret": ...}}) and/or ssl_context=,'
                        " or pass insecure=True to accept the risk"
                    )
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
        fast = link.fast
        if fast is not None:
            fast.send(frame)
            return
        size = len(frame)
        if size > self.options.max_frame_size:
            raise too_large(size, self.options.max_frame_size)
        held = link.outbox_bytes
        if held and held + size + HEADER.size > self.options.max_outbox_bytes:
            raise outbox_full(process, held, self.options.max_outbox_bytes)
        link.outbox.append(encode_header(size))
        link.outbox.append(frame)
        link.outbox_bytes = held + size + HEADER.size
        if not held:
            # The writer waits only once it has found the outbox empty.
            link.wake.set()

    def disconnect(self, process: ListenerId, reason: str) -> None:
        """Close the link to ``process`` now, unflushed (see `Transport.disconnect`).

        The link leaves the link table at once (so `send` refuses and a new link from
        that process is accepted), its outbox and receive buffers are dropped, and on
        the asyncio fast path the socket is aborted right here; on the stream path the
        link's task closes it at its next turn. A dial loop to that process redials.
        """
        link = self._links.pop(process, None)
        if link is None:
            return
        logger.info("closed the link to process %r: %s", process, reason)
        link.abort(f"disconnected: {reason}")
        if link.fast is not None:
            link.fast.transport.abort()

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
        # Silent connections are cheap to open: past max_handshakes the oldest one is
        # closed, so a flood cannot hold every slot for handshake_timeout while a peer
        # that completes its handshake at once still gets through.
        waiting = self._handshaking
        if len(waiting) >= self.options.max_handshakes:
            oldest = next(iter(waiting))
            del waiting[oldest]
            oldest.cancel()
            self._evicted()
        scope = anyio.CancelScope()
        waiting[scope] = None
        link: _Link | None = None
        try:
            with scope:
                link = await self._accept_handshake(stream, address)
        finally:
            waiting.pop(scope, None)
        if link is not None:
            self._start_link(link)

    def _evicted(self) -> None:
        self.handshakes_evicted += 1
        self._evictions_unlogged += 1
        now = time.monotonic()
        if now - self._eviction_logged_at >= _EVICTION_LOG_INTERVAL:
            logger.warning(
                "closed %d connection(s) still in their handshake to make room for newer"
                " ones: more than max_handshakes (%d) at once",
                self._evictions_unlogged,
                self.options.max_handshakes,
            )
            self._evictions_unlogged = 0
            self._eviction_logged_at = now

    async def _accept_handshake(self, stream: anyio.abc.SocketStream, address: str) -> _Link | None:
        """The handshake of an accepted connection: the link, or None (stream closed)."""
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
                return await self._handshake(byte_stream, dialed=False, address=address)
        except _Duplicate:
            return None
        except TimeoutError:
            logger.warning(
                "closed a connection from %s that did not finish its handshake within %g s",
                address,
                opts.handshake_timeout,
            )
            await _close_quietly(byte_stream)
            return None
        except _LINK_ERRORS as exc:
            logger.warning("dropped connection from %s: %s", address, describe(exc))
            await _close_quietly(byte_stream)
            return None
        except BaseException:
            await _close_quietly(byte_stream)
            raise

    async def _dial_loop(self, address: tuple[str, int]) -> None:
        """Keep one link to ``address``: dial, back off on failure, redial after loss."""
        url = self._dials[address]
        backoff = _Backoff(self.options)
        while True:
            existing = self._link_for(address)
            if existing is not None:
                await existing.finished.wait()
                backoff.reset()
                continue
            try:
                link = await self._dial(address, url)
            except _Duplicate as exc:
                # The peer dialed us first: wait for that link to end before trying again.
                self._dialed[address] = exc.process
                duplicate = self._links.get(exc.process)
                if duplicate is not None:
                    await duplicate.finished.wait()
            except _SelfDial:
                logger.warning("not dialing %s: it is this process's own address", url)
                return
            except TimeoutError:
                # Routine too: a peer starting, or paused (SIGSTOP), accepts but is silent.
                logger.debug(
                    "dialing %s failed: no handshake within %g s",
                    url,
                    self.options.handshake_timeout,
                )
            except _LINK_ERRORS as exc:
                # Unreachable peers are routine (starting, restarting); a refused
                # handshake is news.
                news = isinstance(exc, (HandshakeError, ssl.SSLError))
                log = logger.warning if news else logger.debug
                log("dialing %s failed: %s", url, describe(exc))
                assert self._handler is not None
                _notify(self._handler.dial_failed, url, describe_error(exc))
            else:
                backoff.reset()
                self._dialed[address] = link.hello.process
                self._start_link(link)
                await link.finished.wait()
            await backoff.wait()

    async def _dial(self, address: tuple[str, int], url: str) -> _Link:
        """One dial and handshake, bounded by ``handshake_timeout``."""
        opts = self.options
        context = opts.ssl_client_context or opts.ssl_context
        host, port = address
        with anyio.fail_after(opts.handshake_timeout):
            stream: anyio.abc.ByteStream
            if context is None:
                stream = await anyio.connect_tcp(host, port)
            else:
                stream = await anyio.connect_tcp(
                    host, port, ssl_context=context, tls_standard_compatible=False
                )
            try:
                return await self._handshake(stream, dialed=True, address=url)
            except BaseException:
                await _close_quietly(stream)
                raise

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
        linked = self._links.get(theirs.process)
        if (
            secret is None
            and linked is not None
            and not linked.closing
            and linked.hello.incarnation != theirs.incarnation
        ):
            # Without a secret a hello proves nothing: anyone could claim a linked
            # process's ID with a new incarnation and so cut the real one off, failing
            # its requests. A genuine restart closes the old link (at once when the
            # process died; after the core's failure detector bound when it went
            # silent), and its next dial is accepted.
            raise HandshakeError(
                f"{address} claims to be process {theirs.process!r} (incarnation"
                f" {theirs.incarnation}) while that process is linked (incarnation"
                f" {linked.hello.incarnation}); refused until that link ends (set a"
                " secret to authenticate peers)"
            )
        if arbitrates(local.process, theirs.process):
            existing = self._links.get(theirs.process)
            decision = verdict(
                None if existing is None else existing.hello.incarnation, theirs.incarnation
            )
            if decision != ACCEPT:
                await stream.send(decision)
                await _close_quietly(stream)
                logger.debug("closed a duplicate link to %r", theirs.process)
                raise _Duplicate(theirs.process)
            # The verdict goes out first, through the outbox, ahead of any frame.
            link = _Link(hello, stream, reader.buffer, outbox=[decision], outbox_bytes=1)
        else:
            if await reader.receive_exactly(len(ACCEPT)) != ACCEPT:
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
        """On asyncio without TLS, move the link's data path onto a `FastPath`.

        Done right after peer_up, before the event loop runs again: frames the core
        queued from peer_up (and the arbitration verdict) go out first, then the bytes
        the handshake read ahead are parsed, then the socket is read by the protocol.
        """
        handler = self._handler
        assert handler is not None
        if self._links.get(link.hello.process) is not link:
            return
        opts = self.options
        adopted = adopt(
            link.stream,
            link.leftover,
            lambda transport: FastPath(
                link.hello.process,
                transport,
                handler.frames_received,
                link.fast_ended,
                max_frame_size=opts.max_frame_size,
                max_outbox_bytes=opts.max_outbox_bytes,
                budget=self.receive_budget,
            ),
        )
        if adopted is None:
            return
        fast, ahead, at_eof = adopted
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
        resume_reading(fast)

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

    async def _watch_fast(self, link: _Link, fast: FastPath) -> None:
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
        received = self._handler.frames_received
        process = link.hello.process
        decoder = FrameDecoder(self.options.max_frame_size, self.receive_budget)
        receive = link.stream.receive
        chunk = link.leftover
        frames: list[bytes] = []
        try:
            while True:
                # The frames of one chunk go to the core in one call; extend keeps those
                # yielded before a FrameError, which are handed over below.
                frames.extend(decoder.feed(chunk))
                if frames:
                    _hand_over(received, process, frames)
                    frames = []
                if decoder.finished:
                    link.reason = link.reason or "closed by the peer"
                    return
                chunk = await receive(_RECEIVE_SIZE)
        except FrameError as exc:
            if frames:
                _hand_over(received, process, frames)
            link.reason = f"protocol error: {exc}"
            logger.warning("dropped the link to process %r: %s", process, exc)
        except anyio.EndOfStream:
            link.reason = link.reason or "connection closed by the peer"
        except _LINK_ERRORS as exc:
            link.reason = link.reason or f"connection lost: {describe(exc)}"
        finally:
            decoder.release()

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
            link.abort(f"connection lost: {describe(exc)}")


def _notify(callback: Any, *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("transport handler %r raised", callback)


def _hand_over(
    received: Callable[[ListenerId, list[bytes]], None], process: ListenerId, frames: list[bytes]
) -> None:
    """Give the core the frames of one read (see `FastPath._parse` for the guard)."""
    try:
        received(process, frames)
    except Exception:
        logger.exception("frame handler failed for process %r", process)


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
