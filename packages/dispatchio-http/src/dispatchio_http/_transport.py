"""HTTP transport: one WebSocket per pair of dispatchers, on an aiohttp server per URL.

Features:
    * Peers link through ``GET {prefix}/v1/peer``, upgraded to a WebSocket that carries
      frames both ways (``u32`` length + payload, several per message while the link is
      busy), FIFO per peer, at most once, whole. Measured on loopback, a WebSocket round
      trip costs a fifth of a POST round trip and needs no server on the dialing side,
      so a process that only connects (behind NAT, in a browser's network) still links.
    * Exactly one link per pair of processes, even when both dial each other.
    * Every URL's server also serves the gateway for plain HTTP clients (`gateway`
      option; `dispatchio_http._gateway`), behind the same guard: the bearer token,
      body caps checked before reading, the origin check and CORS for ``cors_origins``,
      and the header timeout against slow clients (see `dispatchio_http._server`).
    * Token authentication both ways: a dialer presents ``Authorization: Bearer``, the
      server proves it knows the token by an HMAC over the dialer's fresh nonce
      (`dispatchio_http._handshake`). Compared in constant time; never logged.
    * TLS for ``https://`` URLs (``ssl_context``; ``ssl_client_context`` for dialing).
    * Reconnection with exponential backoff and jitter, until `HttpTransport.aclose`.
    * A bounded outbox per peer: over ``max_outbox_bytes`` queued, `HttpTransport.send`
      raises `OutboxFullError` instead of growing memory.

URL format:
    ``http://host:port[/prefix]`` and ``https://host:port[/prefix]``. To listen, the
    host defaults to ``127.0.0.1`` and port ``0`` picks a free port (``serve`` reports
    the URL actually bound). To connect, the port defaults to 80 (443 for https). The
    prefix is the path the server's routes sit under (letters, digits, ``-._~`` and
    ``/``). Query parameters are options, except ``token``: URLs are gossiped.

Options (`HttpOptions`):
    ``token``, ``insecure``, ``gateway``, ``max_body_size``, ``max_pending_body_bytes``,
    ``max_streams``, ``max_concurrent_requests``, ``header_timeout``, ``body_timeout``,
    ``cors_origins``, ``ssl_context``, ``ssl_client_context``, ``max_receive_bytes``,
    ``handshake_timeout``, ``reconnect_min``, ``reconnect_max``, and the common
    ``max_frame_size``, ``max_outbox_bytes`` and ``close_timeout``; each is described on
    its field. ``https://`` URLs take their own options, under
    ``transport_options={"https": {...}}``.

Limitations:
    * asyncio only (aiohttp has no trio support): on trio, starting a dispatcher with an
      ``http://`` URL raises `TransportConfigError`.
    * Frames still queued when a link breaks are dropped (the core is told by
      ``peer_down``); nothing is replayed on the next link.
    * A host name binds its first address of one family (IPv6 when the host contains
      a ``:``); listen on several URLs for several addresses.
    * No heartbeats at this level: a silent peer is noticed by the core's detector.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import ipaddress
import logging
import random
import re
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, ClassVar, NamedTuple

import aiohttp
import anyio
import anyio.abc
import sniffio
from aiohttp import WSMsgType, web

from dispatchio import (
    ListenerId,
    MessageTooLargeError,
    OutboxFullError,
    TransportConfigError,
    TransportError,
)
from dispatchio.transport import (
    PeerHello,
    Transport,
    TransportHandler,
    TransportOptions,
    describe_error,
)
from dispatchio_http import _server
from dispatchio_http._frames import (
    HEADER,
    FrameError,
    FrameReader,
    ReceiveBudget,
    batches,
    message_cap,
)
from dispatchio_http._handshake import (
    ACCEPT,
    HELLO_HEADER,
    NONCE_SIZE,
    REFUSED_HEADER,
    HandshakeError,
    Hello,
    decode_hello,
    encode_hello,
    make_proof,
)
from dispatchio_http._options import HttpOptions
from dispatchio_http._problems import problem_response

__all__ = ["HttpTransport", "HttpsTransport", "format_url", "parse_url"]

logger = logging.getLogger("dispatchio.http")

DEFAULT_HOST = "127.0.0.1"
PEER_PATH = "/v1/peer"
_GATEWAY = "dispatchio_http._gateway"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")
# What a broken or misbehaving link raises; anything else is a bug and propagates.
_LINK_ERRORS = (
    OSError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    TimeoutError,
    TransportError,
)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) can be reached from this machine only.

    Any other name counts as reachable from elsewhere: what it resolves to may change.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").partition("%")[0]).is_loopback
    except ValueError:
        return False


class Address(NamedTuple):
    """Where a dispatcher's HTTP server is: the parts of its URL that matter."""

    scheme: str
    host: str
    port: int
    prefix: str


def parse_url(url: str, *, listening: bool) -> Address:
    """The address of an ``http://`` or ``https://`` URL (query and fragment ignored).

    Raises:
        TransportConfigError: not http(s), a bad port, or a prefix with characters
            other than letters, digits, ``-._~`` and ``/``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransportConfigError(f"{url!r}: {exc}") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise TransportConfigError(f"{url!r} is not an http:// or https:// URL")
    prefix = parts.path.rstrip("/")
    if not _PREFIX.fullmatch(prefix):
        raise TransportConfigError(
            f"{url!r}: the path prefix may hold only letters, digits, '-._~' and '/'"
        )
    if port is None:
        port = 0 if listening else _DEFAULT_PORTS[parts.scheme]
    return Address(parts.scheme, parts.hostname or DEFAULT_HOST, port, prefix)


def format_url(address: Address) -> str:
    """The URL of ``address``, with an IPv6 host in brackets."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{address.scheme}://{host}:{address.port}{address.prefix}"


class _Duplicate(Exception):
    """The pair has a link already; this connection is closed."""

    def __init__(self, process: ListenerId | None) -> None:
        super().__init__(process)
        self.process = process


class _SelfDial(HandshakeError):
    """A dial reached this very process; dialing that URL again is pointless."""


Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse[bool]


@dataclass(eq=False)
class _Link:
    """One handshaken WebSocket to one peer."""

    hello: PeerHello
    ws: Socket
    outbox: list[bytes] = field(default_factory=list)
    outbox_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    reason: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: The connection under the WebSocket, to abort it (None: unknown, close it instead).
    socket: asyncio.Transport | None = None

    def abort(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.scope.cancel()

    def drop_now(self) -> None:
        """Close the connection at once, whatever is still buffered (see disconnect)."""
        self.outbox.clear()
        self.outbox_bytes = 0
        if self.socket is not None and not self.socket.is_closing():
            self.socket.abort()


class HttpTransport(Transport):
    """Frames over WebSockets between dispatchers' HTTP servers; see the module docstring."""

    scheme: ClassVar[str] = "http"
    Options: ClassVar[type[TransportOptions]] = HttpOptions
    options: HttpOptions

    def __init__(self, options: TransportOptions | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        if not isinstance(self.options, HttpOptions):
            raise TransportConfigError(
                f"{self.scheme} transport: options must be HttpOptions,"
                f" not {type(self.options).__name__}"
            )
        tls = self.scheme == "https"
        if not tls and (self.options.ssl_context or self.options.ssl_client_context):
            raise TransportConfigError(
                "http transport: ssl_context and ssl_client_context need https:// URLs"
            )
        self._links: dict[ListenerId, _Link] = {}
        self._dials: dict[Address, str] = {}
        self._dialed: dict[Address, ListenerId] = {}
        self._pending_dials: list[Address] = []
        self._handler: TransportHandler | None = None
        self._local: PeerHello | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._aux: anyio.abc.TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._serving = False
        self._stopped: anyio.Event | None = None
        self._cap = message_cap()
        opts = self.options
        #: Large frames being reassembled across peer links (``max_receive_bytes``).
        self.receive_budget = ReceiveBudget(
            opts.max_receive_bytes
            if opts.max_receive_bytes is not None
            else 64 * opts.max_frame_size
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Transport:
        """Build a transport from a URL; query parameters are options, except ``token``.

        Raises:
            TransportConfigError: a ``token`` in the URL (URLs are gossiped to every
                peer: pass it in ``transport_options``), or as `Transport.from_url`.
        """
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)
        if "token" in query:
            raise TransportConfigError(
                f"{cls.scheme} URL: the token never goes in a URL (URLs are gossiped to every"
                f' peer); pass it as transport_options={{"{cls.scheme}": {{"token": ...}}}}'
            )
        return super().from_url(url, **options)

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
            TransportConfigError: not on asyncio, a bad URL, https without ssl_context, or
                an http:// host beyond loopback without ``token`` (unless ``insecure``),
                refused before binding.
            TransportError: a URL cannot be bound (``from`` the OS error).
        """
        _require_asyncio(self.scheme)
        if self._serving or self._closing:
            raise TransportError(f"this {self.scheme} transport was started or closed already")
        addresses = [self._own(parse_url(url, listening=True), url) for url in listen]
        if addresses and self.scheme == "https" and self.options.ssl_context is None:
            raise TransportConfigError(
                "https transport: listening needs the ssl_context option (a server context)"
            )
        opts = self.options
        if opts.token is None and self.scheme == "http" and not opts.insecure:
            for address, url in zip(addresses, listen, strict=True):
                if not _is_loopback(address.host):
                    raise TransportConfigError(
                        f"refusing to listen on {url!r}: beyond loopback without"
                        " authentication any host that reaches it can join the mesh and use"
                        ' the gateway. Set the http option token="..." (the same on every'
                        ' process; e.g. transport_options={"http": {"token": ...}}) and/or'
                        " listen on https:// with ssl_context=, or pass insecure=True to"
                        " accept the risk"
                    )
        self._serving = True
        self._stopped = stopped = anyio.Event()
        runners: list[web.AppRunner] = []
        sockets: list[socket.socket] = []
        try:
            for address, url in zip(addresses, listen, strict=True):
                try:
                    sockets.append(_server.bind(address.host, address.port))
                except OSError as exc:
                    raise TransportError(f"cannot listen on {url!r}: {exc}") from exc
            bound = [
                format_url(address._replace(port=sock.getsockname()[1]))
                for address, sock in zip(addresses, sockets, strict=True)
            ]
            self._handler = handler
            # Peers are told the bound URLs (port 0 resolved) in place of the listen
            # specs; any other URL the core advertises (a public name) is kept.
            extra = tuple(url for url in local.urls if url not in listen and url not in bound)
            self._local = local._replace(urls=(*bound, *extra))
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
                timeout=aiohttp.ClientTimeout(total=None),
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tls = self.scheme == "https"
                for url, sock in zip(bound, sockets, strict=True):
                    app = self._build_app(parse_url(url, listening=True).prefix)
                    try:
                        runners.append(await _server.start(app, sock, self.options, tls=tls))
                    except OSError as exc:
                        raise TransportError(f"cannot serve on {url!r}: {exc}") from exc
                await tg.start(self._run_aux)
                task_status.started(tuple(bound))
                await anyio.sleep_forever()
        finally:
            self._closing = True
            with anyio.CancelScope(shield=True):
                for link in list(self._links.values()):
                    link.abort("closed by this process")
                for runner in runners:
                    with anyio.move_on_after(self.options.close_timeout):
                        await runner.cleanup()
                if self._session is not None:
                    await self._session.close()
            for sock in sockets:
                sock.close()
            stopped.set()

    async def connect(self, url: str) -> None:
        """Queue a dial to ``url``; it retries with backoff and reconnects after loss.

        Raises:
            TransportConfigError: not on asyncio, or a bad URL of this scheme.
            TransportError: the transport is closed.
        """
        _require_asyncio(self.scheme)
        address = self._own(parse_url(url, listening=False), url)
        if self._closing:
            raise TransportError(f"the {self.scheme} transport is closed")
        if address in self._dials:
            return
        self._dials[address] = url
        if self._aux is None:
            self._pending_dials.append(address)
        else:
            self._aux.start_soon(self._dial_loop, address, name=f"dispatchio.http dial {url}")

    def send(self, process: ListenerId, frame: bytes) -> None:
        """Queue ``frame`` for ``process`` without blocking (see `Transport.send`)."""
        link = self._links.get(process)
        if link is None or link.closing:
            if self._closing:
                raise TransportError(f"the {self.scheme} transport is closed")
            raise TransportError(f"no {self.scheme} link to process {process!r}")
        size = len(frame)
        if size > self.options.max_frame_size:
            raise MessageTooLargeError(
                f"frame of {size} bytes exceeds max_frame_size {self.options.max_frame_size}"
            )
        held = link.outbox_bytes
        if held and held + size + HEADER.size > self.options.max_outbox_bytes:
            raise OutboxFullError(
                f"outbox to process {process!r} holds {held} bytes"
                f" (max_outbox_bytes {self.options.max_outbox_bytes})"
            )
        link.outbox += (HEADER.pack(size), frame)
        link.outbox_bytes = held + size + HEADER.size
        if not held:
            link.wake.set()  # the writer waits only once it found the outbox empty

    def disconnect(self, process: ListenerId, reason: str) -> None:
        """Close the link to ``process`` now, unflushed (see `Transport.disconnect`).

        The link leaves the link table at once (so `send` refuses and a new link from
        that process is accepted), its outbox is dropped and its connection aborted
        here; the link's task ends at its next turn. A dial loop to that process redials.
        """
        link = self._links.pop(process, None)
        if link is None:
            return
        logger.info("closed the link to process %r: %s", process, reason)
        link.abort(f"disconnected: {reason}")
        link.drop_now()

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

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the server side

    def _is_closing(self) -> bool:
        return self._closing

    def _impostor(self, process: ListenerId, incarnation: int, address: str) -> str | None:
        """Why a hello is refused as a claim on a linked process's ID (None: it is not).

        Without a token a hello proves nothing: anyone could claim a linked process's ID
        with a new incarnation and so cut the real one off, failing its requests. A
        genuine restart closes the old link (at once when the process died; after the
        core's failure detector bound when it went silent), and its next dial gets in.
        """
        linked = self._links.get(process)
        if (
            self.options.token is not None
            or linked is None
            or linked.closing
            or linked.hello.incarnation == incarnation
        ):
            return None
        reason = (
            f"{address} claims to be process {process!r} (incarnation {incarnation}) while"
            f" that process is linked (incarnation {linked.hello.incarnation}); refused until"
            " that link ends (set a token to authenticate peers)"
        )
        logger.warning("refused a peer link: %s", reason)
        return reason

    def _own(self, address: Address, url: str) -> Address:
        if address.scheme != self.scheme:
            raise TransportConfigError(f"{url!r} is not a {self.scheme}:// URL")
        return address

    def _build_app(self, prefix: str) -> web.Application:
        app = _server.build_app(prefix, self.options)
        app.router.add_get(prefix + PEER_PATH, self._accept)
        if self.options.gateway and find_spec(_GATEWAY) is not None:
            # Looked up, not imported by name: the gateway is a separate module that may
            # be absent from a build of the transport alone.
            install_gateway = importlib.import_module(_GATEWAY).install_gateway
            assert self._handler is not None
            install_gateway(
                app, prefix=prefix, dispatcher=self._handler.dispatcher, options=self.options
            )
        return app

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        """``GET {prefix}/v1/peer``: a peer dials in (the guard checked its token)."""
        local = self._local
        if self._closing or local is None or self._tg is None:
            return _refuse(503, "closing", "this process is shutting down")
        if request.headers.get(aiohttp.hdrs.ORIGIN) is not None:
            # Browsers always send Origin; a dispatchio peer never does.
            return _refuse(403, "browser", "a web page cannot be a peer")
        address = request.remote or "an unknown address"
        try:
            theirs = decode_hello(request.headers.get(HELLO_HEADER))
        except HandshakeError as exc:
            logger.warning("refused a peer link from %s: %s", address, exc)
            return _refuse(400, "bad_hello", str(exc))
        if str(theirs.process) == str(local.process):
            return _refuse(409, "self", f"this is process {local.process!r} itself")
        ws = web.WebSocketResponse(
            max_msg_size=self._cap + 1, compress=False, autoping=True, autoclose=True
        )
        if not ws.can_prepare(request).ok:
            return _refuse(426, "upgrade", "a peer link is a WebSocket upgrade")
        hello = PeerHello(theirs.process, theirs.incarnation, theirs.urls)
        claimed = self._impostor(theirs.process, theirs.incarnation, address)
        if claimed is not None:
            return _refuse(409, "claimed", claimed)
        link = _Link(hello, ws, socket=request.transport)
        arbiter = str(local.process) < str(theirs.process)
        if arbiter:
            existing = self._links.get(theirs.process)
            if existing is not None and existing.hello.incarnation == theirs.incarnation:
                logger.debug("refused a duplicate link from %r", theirs.process)
                return _refuse(409, "duplicate", f"a link to {theirs.process!r} exists")
            # Installed before the answer, so a second dial from that peer meanwhile
            # finds it; frames the core queues now follow the hello.
            self._install(link)
        token = self.options.token
        mine = Hello(
            local.process,
            local.incarnation,
            local.urls,
            secrets.token_bytes(NONCE_SIZE),
            make_proof(token, theirs, local.process) if token is not None else b"",
        )
        try:
            with anyio.fail_after(self.options.handshake_timeout):
                await ws.prepare(request)
                await ws.send_str(encode_hello(mine))
                if not arbiter:
                    verdict = await ws.receive()
                    if verdict.type is not WSMsgType.TEXT or verdict.data != ACCEPT:
                        logger.debug("peer %r closed a duplicate link", theirs.process)
                        await ws.close()
                        return ws
                    if self._is_closing():  # while waiting for the verdict
                        await ws.close()
                        return ws
                    self._install(link)
        except _LINK_ERRORS as exc:
            logger.debug("peer link from %s failed: %s", address, _describe(exc))
            link.abort(f"handshake failed: {_describe(exc)}")
            self._drop(link)
            if not ws.prepared:
                return _refuse(400, "handshake", "the handshake failed")
            return ws
        self._tg.start_soon(self._run_link, link, name=f"dispatchio.http {theirs.process!r}")
        await link.finished.wait()
        return ws

    # ------------------------------------------------------------------ the dialing side

    async def _run_aux(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        # Dial loops live here, so aclose() stops them at once while links flush.
        async with anyio.create_task_group() as aux:
            self._aux = aux
            for address in self._pending_dials:
                aux.start_soon(self._dial_loop, address)
            self._pending_dials.clear()
            task_status.started()
            await anyio.sleep_forever()

    async def _dial_loop(self, address: Address) -> None:
        url = self._dials[address]
        opts = self.options
        delay = opts.reconnect_min
        while True:
            existing = self._link_for(address)
            if existing is not None:
                await existing.finished.wait()
                delay = opts.reconnect_min
                continue
            try:
                with anyio.fail_after(opts.handshake_timeout):
                    link = await self._dial(address, url)
            except _Duplicate as exc:
                # The peer has a link with us already: wait for it to end, then retry.
                if exc.process is not None:
                    self._dialed[address] = exc.process
                    duplicate = self._links.get(exc.process)
                    if duplicate is not None:
                        await duplicate.finished.wait()
            except _SelfDial:
                logger.warning("not dialing %s: it is this process's own address", url)
                return
            except _LINK_ERRORS as exc:
                # Unreachable peers are routine (starting, restarting); a refusal is news.
                news = isinstance(exc, (HandshakeError, ssl.SSLError, aiohttp.ClientSSLError))
                (logger.warning if news else logger.debug)(
                    "dialing %s failed: %s", url, _describe(exc)
                )
                assert self._handler is not None
                _notify(self._handler.dial_failed, url, describe_error(exc))
            else:
                delay = opts.reconnect_min
                self._dialed[address] = link.hello.process
                self._start_link(link)
                await link.finished.wait()
            await anyio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, opts.reconnect_max)

    async def _dial(self, address: Address, url: str) -> _Link:
        """Dial, handshake and install a link (announced with peer_up).

        Raises _Duplicate, _SelfDial, HandshakeError or a link error.
        """
        local, session = self._local, self._session
        assert local is not None
        assert session is not None
        mine = Hello(local.process, local.incarnation, local.urls, secrets.token_bytes(NONCE_SIZE))
        headers = {HELLO_HEADER: encode_hello(mine)}
        token = self.options.token
        if token is not None:
            headers[aiohttp.hdrs.AUTHORIZATION] = f"Bearer {token}"
        ws_url = ("wss" if address.scheme == "https" else "ws") + format_url(address)[
            len(address.scheme) :
        ]
        try:
            ws = await session.ws_connect(
                ws_url + PEER_PATH,
                headers=headers,
                ssl=self._client_ssl(),
                max_msg_size=self._cap + 1,
                compress=0,
                autoping=True,
                autoclose=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=self.options.close_timeout),
            )
        except aiohttp.WSServerHandshakeError as exc:
            refused = None if exc.headers is None else exc.headers.get(REFUSED_HEADER)
            if refused == "duplicate":
                raise _Duplicate(None) from exc
            if refused == "self":
                raise _SelfDial(f"{url} is this process itself") from exc
            if exc.status == 401:
                raise HandshakeError(
                    f"{url} refused the link: "
                    + ("wrong token" if token is not None else "it requires a token")
                ) from exc
            if refused is None:
                raise HandshakeError(
                    f"{url} refused the link with HTTP {exc.status}: no dispatchio peer there?"
                ) from exc
            raise HandshakeError(f"{url} refused the link ({refused}, HTTP {exc.status})") from exc
        try:
            first = await ws.receive()
            if first.type is not WSMsgType.TEXT:
                raise HandshakeError(f"{url} sent no hello")
            theirs = decode_hello(first.data)
            if token is not None and not hmac.compare_digest(
                theirs.proof, make_proof(token, mine, theirs.process)
            ):
                raise HandshakeError(f"process {theirs.process!r} at {url} failed authentication")
            if str(theirs.process) == str(local.process):
                raise _SelfDial(f"{url} is this process itself")
            claimed = self._impostor(theirs.process, theirs.incarnation, url)
            if claimed is not None:
                raise HandshakeError(claimed)
            link = _Link(
                PeerHello(theirs.process, theirs.incarnation, theirs.urls),
                ws,
                socket=_client_transport(ws),
            )
            if str(local.process) < str(theirs.process):
                # This side arbitrates: the link already there wins, unless the peer
                # restarted (a new incarnation), so there is never more than one.
                existing = self._links.get(theirs.process)
                if existing is not None and existing.hello.incarnation == theirs.incarnation:
                    raise _Duplicate(theirs.process)
                if self._closing:
                    raise TransportError(f"the {self.scheme} transport is closed")
                await ws.send_str(ACCEPT)
            self._install(link)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await ws.close()
            raise
        return link

    def _client_ssl(self) -> ssl.SSLContext | bool:
        if self.scheme != "https":
            return False
        opts = self.options
        if opts.ssl_client_context is not None:
            return opts.ssl_client_context
        server = opts.ssl_context
        if server is not None and server.protocol != ssl.PROTOCOL_TLS_SERVER:
            return server
        return True  # the system's trusted CAs

    def _link_for(self, address: Address) -> _Link | None:
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

    # ------------------------------------------------------------------ links

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

    def _drop(self, link: _Link) -> None:
        """Forget ``link`` (once), telling the core it is down if it was announced."""
        process = link.hello.process
        if self._links.get(process) is link:
            del self._links[process]
            reason = link.reason or "link closed"
            logger.info("link to process %r is down: %s", process, reason)
            assert self._handler is not None
            _notify(self._handler.peer_down, process, reason)
        link.outbox.clear()
        link.outbox_bytes = 0
        link.finished.set()

    def _start_link(self, link: _Link) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._run_link, link, name=f"dispatchio.http {link.hello.process!r}")

    async def _run_link(self, link: _Link) -> None:
        try:
            with link.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_loop, link)
                    await self._read_loop(link)
                    if not link.closing:
                        tg.cancel_scope.cancel()
                    # else the writer is closing the WebSocket: it ends when the peer
                    # answers the close (or aclose's bound cancels it).
        finally:
            self._drop(link)
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1),
                contextlib.suppress(*_LINK_ERRORS),
            ):
                await link.ws.close()

    async def _read_loop(self, link: _Link) -> None:
        assert self._handler is not None
        received = self._handler.frame_received
        process = link.hello.process
        receive = link.ws.receive
        reader = FrameReader(self.options.max_frame_size, self.receive_budget)
        feed = reader.feed
        binary = WSMsgType.BINARY
        try:
            while True:
                message = await receive()
                if message.type is binary:
                    for frame in feed(message.data):
                        try:
                            received(process, frame)
                        except Exception:
                            logger.exception("frame handler failed for process %r", process)
                    continue
                if message.type is WSMsgType.ERROR:
                    raise FrameError(_describe(message.data))
                if message.type is WSMsgType.TEXT:
                    raise FrameError("a text message on an established link")
                link.reason = link.reason or "closed by the peer"
                return
        except FrameError as exc:
            link.reason = f"protocol error: {exc}"
            logger.warning("dropped the link to process %r: %s", process, exc)
        except _LINK_ERRORS as exc:
            link.reason = link.reason or f"connection lost: {_describe(exc)}"
        finally:
            reader.release()

    async def _write_loop(self, link: _Link) -> None:
        ws = link.ws
        send = ws.send_bytes
        try:
            while True:
                if not link.outbox:
                    if link.closing:
                        link.reason = link.reason or "closed by this process"
                        await ws.close()  # behind every frame sent: the peer reads them all
                        return
                    link.wake.clear()
                    await link.wake.wait()
                    continue
                # Whatever queued while the previous message was being written goes
                # out now: batching exactly when the link is busy, with no timer.
                parts, link.outbox = link.outbox, []
                size = link.outbox_bytes
                for data in batches(parts, size):
                    await send(data)
                link.outbox_bytes -= size
        except _LINK_ERRORS as exc:
            link.abort(f"connection lost: {_describe(exc)}")


class HttpsTransport(HttpTransport):
    """`HttpTransport` over TLS, for ``https://`` URLs (``ssl_context`` to listen)."""

    scheme: ClassVar[str] = "https"


def _client_transport(ws: aiohttp.ClientWebSocketResponse[bool]) -> asyncio.Transport | None:
    """The connection under a client WebSocket, if aiohttp's layout is the expected one.

    aiohttp gives no public handle on it; without one, `disconnect` closes the
    WebSocket instead (its buffers then go when the peer reads them or the OS gives up).
    """
    connection = getattr(getattr(ws, "_response", None), "connection", None)
    transport = getattr(connection, "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None


def _require_asyncio(scheme: str) -> None:
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "no event loop"
    if library != "asyncio":
        raise TransportConfigError(
            f"the {scheme} transport runs on asyncio only (aiohttp does not support"
            f" {library}): run this dispatcher with anyio.run(..., backend='asyncio'),"
            " or use tcp:// URLs on trio"
        )


def _refuse(status: int, code: str, detail: str) -> web.Response:
    response = problem_response(status, code, detail)
    response.headers[REFUSED_HEADER] = code
    return response


def _notify(callback: Any, *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("transport handler %r raised", callback)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
