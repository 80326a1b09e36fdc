"""The transport contract: what a cross-process transport plugin implements.

A transport moves opaque frames (bytes) between processes and reports which processes
it can reach. Everything else, the directory of remote listeners, heartbeats and
failure detection, encoding, size limits, replies, letters, groups and blocking, lives
once in the core (`dispatchio._mesh`), so every transport behaves the same and one
conformance suite (`dispatchio.testing.TransportConformance`) proves it.

How the project's transports map onto it:

* TCP (``dispatchio-tcp``, ``tcp://host:port``): peer-to-peer streams; the transport
  does a handshake carrying the `PeerHello`, optional TLS and shared-secret
  authentication, length-prefixed frames, reconnection and a bounded outbox per peer.
* HTTP (``dispatchio-http``, ``http://host:port/prefix``): an aiohttp server per listen
  URL; one WebSocket per pair of processes carries batches of frames both ways.
* Kafka (``dispatchio-kafka``, ``kafka://host:port/namespace``): no direct links; an
  inbox topic per process, membership through a members topic, so `peer_up` means "seen
  there" and `Transport.connect` only names the broker.

A transport plugin registers its class lazily through the
``dispatchio_register_transports`` hook (``register("tcp", "dispatchio_tcp:TcpTransport")``)
and is chosen by URL scheme. Transport documentation follows one template: *Features*,
*URL format*, *Options*, *Limitations*.
"""

from __future__ import annotations

import abc
import difflib
import importlib
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import pydantic
from pydantic import ConfigDict, Field

from dispatchio._errors import TransportConfigError
from dispatchio._message import ListenerId
from dispatchio._plugins import checked_plugin_manager, registered_transports

if TYPE_CHECKING:
    import anyio.abc
    import pluggy

    from dispatchio._dispatcher import MessageDispatcher

__all__ = [
    "PeerHello",
    "Transport",
    "TransportHandler",
    "TransportOptions",
    "describe_error",
    "resolve_transport",
]


class TransportOptions(pydantic.BaseModel):
    """Options every transport understands; a transport subclasses it to add its own.

    Unknown options are errors (``extra="forbid"``), never silently ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    max_frame_size: int = Field(
        default=1 << 20,
        ge=1024,
        description="Largest frame accepted or sent, in bytes; checked before allocating.",
    )
    max_outbox_bytes: int = Field(
        default=8 << 20,
        ge=1024,
        description="Bytes queued for one peer before send() refuses more (OutboxFullError).",
    )
    close_timeout: float = Field(
        default=2.0, gt=0, description="Seconds aclose() waits to flush frames already accepted."
    )


class PeerHello(NamedTuple):
    """Who a process is: exchanged when a link comes up."""

    #: The process's dispatcher ID.
    process: ListenerId
    #: A random number chosen at every start: a restarted process is a new incarnation.
    incarnation: int
    #: The URLs the process listens on, as bound (others may dial them). The core passes
    #: its own hello with no URLs: a transport fills in the ones it actually bound.
    urls: tuple[str, ...]
    #: Seconds the process's listeners stay in other processes' directories after it
    #: stopped answering (it crashed, or the link is gone), because its transport keeps
    #: the frames sent to it meanwhile and delivers them when it returns (a Kafka inbox).
    #: Meanwhile the core still sends it letters, and fails at once what needs an answer
    #: now (a request, a ``response_required`` letter). 0 (the default, for transports
    #: that store nothing): it is forgotten at once. A clean shutdown (its GOODBYE)
    #: always forgets it at once. Only the transport that knows it stores frames reports
    #: more than 0, from what the peer advertised.
    durable_for: float = 0.0


class TransportHandler(Protocol):
    """The core side of a transport: implemented by the dispatcher's mesh.

    Its methods are synchronous, never raise, and must be called from the event loop
    thread of the dispatcher (a transport running a blocking client in a worker thread
    hands over with `anyio.from_thread.run_sync`).
    """

    @property
    def dispatcher(self) -> MessageDispatcher:
        """The dispatcher this process runs: a transport that also serves clients that
        are not dispatchers (the HTTP gateway) sends and registers listeners through it,
        with its public API only."""

    def peer_up(self, hello: PeerHello) -> None:
        """A link to ``hello.process`` is up (after any handshake/authentication)."""

    def peer_down(self, process: ListenerId, reason: str) -> None:
        """The link to ``process`` is gone (the transport may still be reconnecting)."""

    def frame_received(self, process: ListenerId, frame: bytes) -> None:
        """A whole frame arrived from ``process``, in the order the peer sent it."""

    def frames_received(self, process: ListenerId, frames: Sequence[bytes]) -> None:
        """Several whole frames arrived from ``process`` together (one read), in order.

        The same as `frame_received` for each frame in turn, in one call: a transport
        that reads many frames at once hands them over like this, and the core decodes
        them and gives their messages to its scheduler as one run. The handler contains
        each frame's failure (a bad frame is dropped, the frames after it are handled).
        """

    def dial_failed(self, url: str, error: str) -> None:
        """An attempt to reach ``url`` (one `Transport.connect` was given) failed with
        ``error``, a short description such as ``"ConnectionRefusedError: [Errno 111]
        Connect call failed ('127.0.0.1', 7400)"``. Called for each failed attempt (the
        transport keeps retrying); the core shows the last one when a ``wait_for_*``
        times out. `describe_error` makes such a description from an exception."""


def describe_error(exc: BaseException) -> str:
    """``"Type: text"`` for an exception, followed in parentheses by the errors it was
    raised from, for `TransportHandler.dial_failed` and logs.

    The causes matter for dialing: anyio's ``connect_tcp`` raises ``OSError("All
    connection attempts failed")`` from the real error (``ConnectionRefusedError``, or a
    group of one error per address tried).
    """
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__
    if cause is not None:
        inner: Any = getattr(cause, "exceptions", None)  # an exception group
        parts = [describe_error(e) for e in inner] if inner else [describe_error(cause)]
        described += f" ({'; '.join(dict.fromkeys(parts))})"
    return described


class Transport(abc.ABC):
    """Moves frames between this process and others. Subclass it for a new transport.

    Lifecycle: construct (no I/O), then ``await task_group.start(transport.serve, ...)``
    (binds, reports its URLs, then serves until closed), `connect` to peers, `send`
    frames, `disconnect` a peer the core declared gone, `aclose`. The dispatcher does all
    of this; users only pass URLs or instances.

    Guarantees a transport must give (the conformance suite checks them): frames to one
    peer arrive in order, at most once, whole; a frame larger than ``max_frame_size`` is
    refused by the sender and dropped (with the link) by the receiver; malformed input
    from one peer never disturbs the links to others; the default bind address is
    127.0.0.1.
    """

    #: The URL scheme, e.g. ``"tcp"``.
    scheme: ClassVar[str]
    #: Whether a peer that stops reading makes this transport's outbox for it fill up, so
    #: that `send` raises `OutboxFullError` (per-peer back-pressure). False when something
    #: in between takes everything (a broker): the local outbox is then bounded by
    #: ``max_outbox_bytes`` all the same, but a frozen peer never fills it, and the
    #: conformance suite skips its outbox-overflow test, saying why.
    peer_backpressure: ClassVar[bool] = True
    #: The options model; subclasses of `TransportOptions`.
    Options: ClassVar[type[TransportOptions]] = TransportOptions

    def __init__(self, options: TransportOptions | None = None, **kwargs: Any) -> None:
        """Store validated options; no I/O.

        Raises:
            TransportConfigError: an unknown option or a bad value, named.
        """
        try:
            if options is None:
                options = self.Options(**kwargs)
            elif kwargs:
                options = self.Options(**{**options.model_dump(), **kwargs})
        except pydantic.ValidationError as exc:
            raise TransportConfigError(f"{self.scheme} transport: {_describe(exc)}") from exc
        self.options = options

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Transport:
        """Build a transport from a URL; query parameters are options (``?max_frame_size=…``).

        Raises:
            TransportConfigError: wrong scheme, unknown option or bad value, naming it.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != cls.scheme:
            raise TransportConfigError(f"{url!r} is not a {cls.scheme}:// URL")
        merged: dict[str, Any] = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        merged.update(options)
        try:
            return cls(None, **merged)
        except TransportConfigError as exc:
            raise TransportConfigError(f"{url!r}: {exc}") from exc

    @abc.abstractmethod
    async def serve(
        self,
        handler: TransportHandler,
        local: PeerHello,
        *,
        listen: Sequence[str],
        task_status: anyio.abc.TaskStatus[tuple[str, ...]],
    ) -> None:
        """Bind every URL of ``listen``, report the bound URLs, then serve until closed.

        Call as ``urls = await task_group.start(transport.serve, handler, local, listen=...)``.
        ``task_status.started(urls)`` reports the URLs actually bound (a port 0 resolved),
        which the core advertises to peers. Returns after `aclose`.

        Raises:
            TransportError: before ``started()``, when binding fails (``from`` the OS error).

        Cancellation closes every link at once, without flushing, and returns promptly.
        """

    @abc.abstractmethod
    async def connect(self, url: str) -> None:
        """Ask for a link to the process listening at ``url``; return once it is queued.

        Success shows up as `TransportHandler.peer_up`; while the peer is unreachable the
        transport keeps retrying with backoff. Connecting twice to one URL is harmless.

        Raises:
            TransportConfigError: ``url`` is malformed or of another scheme.
            TransportError: the transport is closed.
        """

    @abc.abstractmethod
    def send(self, process: ListenerId, frame: bytes) -> None:
        """Queue one frame for ``process``, without blocking.

        Raises:
            OutboxFullError: that peer's outbox holds ``max_outbox_bytes`` already; nothing
                was queued.
            MessageTooLargeError: the frame exceeds ``max_frame_size``.
            TransportError: no link to ``process``, or the transport is closed.

        A failure after the frame was accepted is reported by `TransportHandler.peer_down`.
        """

    @abc.abstractmethod
    def disconnect(self, process: ListenerId, reason: str) -> None:
        """Close the link(s) to ``process`` at once, because the core declared it gone.

        The core calls this when its failure detector (or a GOODBYE) ends a peer whose
        link the transport still holds, e.g. a process paused with SIGSTOP: without it
        the link stays open, the peer's frames are ignored, and it is never served
        again. Synchronous and non-blocking: nothing is flushed, frames queued for that
        process are dropped, and the link's buffers are released (the socket, or what
        stands for it, is closed now or at the next turn of the event loop). No
        `TransportHandler.peer_down` follows for the links closed this way.

        If this side dialed ``process`` it keeps redialing with backoff, as after any
        lost link, so a peer that comes back (a thawed process, a restart on the same
        URL) is linked again, and announced with `TransportHandler.peer_up`, by the
        same path as a new peer. A side that was dialed simply waits to be dialed again.

        Never raises; a process without a link (unknown, already gone, or the transport
        closed) is ignored. ``reason`` is for logs.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop: flush accepted frames (at most ``close_timeout``), close links. Idempotent.

        Cancelled, it closes at once, and the transport is closed all the same.
        """


def _describe(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"option {'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}"
        for err in exc.errors()
    )


def resolve_transport(
    url: str, plugins: pluggy.PluginManager, options: Mapping[str, Any] | None = None
) -> Transport:
    """Build the transport for ``url`` from the plugins' registered schemes.

    The class named by the plugin (``"module:Class"``) is imported only now.

    ``plugins`` is a `dispatchio.PluginManager` or a plain
    ``pluggy.PluginManager("dispatchio")``.

    Raises:
        TransportConfigError: the URL has no scheme, no installed plugin handles it (the
            error lists the installed schemes and suggests a close one), the class cannot
            be imported, or an option is unknown.
        TypeError, ValueError: ``plugins`` is not a dispatchio plugin manager.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if not scheme:
        raise TransportConfigError(f"{url!r} has no scheme (expected e.g. tcp://127.0.0.1:7400)")
    registered = registered_transports(checked_plugin_manager(plugins))
    target = registered.get(scheme)
    if target is None:
        close = difflib.get_close_matches(scheme, registered, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        installed = ", ".join(sorted(registered)) or "none"
        raise TransportConfigError(
            f"no transport for scheme {scheme!r} in {url!r}; installed: {installed}{hint}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise TransportConfigError(
            f"the {scheme!r} transport {target!r} cannot be loaded: {exc}"
        ) from exc
    transport: Transport = cls.from_url(url, **(options or {}))
    return transport
