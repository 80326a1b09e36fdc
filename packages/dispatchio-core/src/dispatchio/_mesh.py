"""Cross-process routing: the directory of remote listeners, membership, liveness, frames.

One `Mesh` per running dispatcher with transports. Transports only move frames; this
module decides what the frames mean, so every transport behaves the same:

* Directory: on link up each side sends a SNAPSHOT of its own listeners and groups;
  later changes go out as numbered DELTAs on the same FIFO link (a gap asks for a new
  snapshot). Only a process speaks for its own listeners.
* Membership is gossiped (SNAPSHOT and MEMBERS frames carry every process known, with
  its URLs), and unknown members are dialed, so joining one member reaches all.
* Liveness: one task sends a HEARTBEAT to every peer it sent nothing to for an interval
  and declares dead any peer silent for ``interval * tolerance``. A lost link, a GOODBYE
  or a new incarnation of the same process ID also ends a peer at once. When the mesh
  itself ends a peer (detector, GOODBYE) the transport closes its link
  (`Transport.disconnect`), so a paused process that resumes comes back through a new
  link. Every reply still owed by a dead peer comes back as ``peer_lost``.
* Dormant peers: a peer whose transport stores frames for it while it is away (its
  `PeerHello.durable_for` is above 0) is not forgotten when it stops answering: for
  ``durable_for`` seconds its listeners stay in the directory, letters to them go to the
  transport (which keeps them for its return), and what needs an answer now (a request,
  a ``response_required`` letter) fails at once. A clean shutdown (GOODBYE) or a new
  incarnation ends it at once; when it comes back (a new link, peer_up) it is up again.
* Every link up asks the peer for its snapshot (SNAPSHOT_REQUEST) besides sending ours:
  through a broker a newcomer's snapshot can arrive before its membership is known, and
  would be lost.
* Group sends go once per process; the receiver answers FANOUT with how many copies it
  made, so the sender's count of expected replies is exact even with a stale directory.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio

from dispatchio import _wire
from dispatchio._errors import (
    HandlerError,
    MessageTooLargeError,
    OutboxFullError,
    PeerLostError,
    TransportConfigError,
    TransportError,
    UndeliverableError,
    format_error,
)
from dispatchio._message import ListenerId, Message, response_to
from dispatchio._registry import REGISTERED, SUBSCRIBED, UNREGISTERED, UNSUBSCRIBED
from dispatchio.transport import PeerHello, Transport, resolve_transport

if TYPE_CHECKING:
    import pluggy

    from dispatchio._observers import DispatcherStats
    from dispatchio._registry import Registry
    from dispatchio._replies import Pending, Replies

logger = logging.getLogger("dispatchio.mesh")

#: The most directory entries (listeners plus group subscriptions) one peer may claim; a
#: SNAPSHOT over it is dropped, a DELTA over it not applied (both logged), so a lying
#: peer cannot make this process hold millions of entries.
MAX_PEER_ENTRIES = 100_000
#: The most processes this one remembers (members gossip); beyond it news is ignored.
MAX_MEMBERS = 10_000
_REFUSED_LOG_INTERVAL = 1.0  # seconds between two warnings about refused frames
_DELTA_OPS = frozenset((REGISTERED, UNREGISTERED, SUBSCRIBED, UNSUBSCRIBED))


class _Refused(ValueError):
    """A frame of the right syntax that this process will not act on (it lies or is wrong)."""


def _check_id(value: object, what: str) -> None:
    cls = value.__class__
    if cls is not str and cls is not int:
        raise _Refused(f"{what} must be an int or a string, not {cls.__name__}")


def _check_ids(values: Any, what: str) -> list[ListenerId]:
    if values.__class__ is not list:
        raise _Refused(f"{what} must be a list, not {values.__class__.__name__}")
    for value in values:
        _check_id(value, f"each of {what}")
    return values


def _check_count(value: Any, what: str) -> int:
    if value.__class__ is not int or value < 0:
        raise _Refused(f"{what} must be an int >= 0, not {value!r:.40}")
    return value


_MAX_ERROR_TEXT: Final = 300  # characters of a dial error kept for a timeout's message
# Messages decoded from one read handed to the scheduler at a time. Bounded so that a
# large read does not keep thousands of decoded messages alive at once: each kept one
# counts towards a gen-0 garbage collection, which then has them all to traverse.
_RUN: Final = 64


def id_order(value: ListenerId) -> tuple[bool, ListenerId]:
    """A sort key for IDs that may mix ints and strs: ints first, each kind in order."""
    return isinstance(value, str), value


class _Peer:
    """What this process knows of another one."""

    __slots__ = (
        "groups",
        "hello",
        "last_heard",
        "listeners",
        "sent",
        "seq",
        "transport",
        "until",
    )

    def __init__(self, hello: PeerHello, transport: Transport, now: float) -> None:
        self.hello = hello
        self.transport = transport
        self.listeners: set[ListenerId] = set()
        self.groups: dict[ListenerId, set[ListenerId]] = {}
        self.seq = -1  # the last directory sequence number applied
        self.last_heard = now
        # Whether a frame went to it since the detector's last tick (a flag, not a clock
        # reading: forward() sets it on every message).
        self.sent = False
        #: While dormant: the clock time its directory entry expires.
        self.until = 0.0


class _TransportEvents:
    """The `TransportHandler` one transport reports to (so the mesh knows which it was)."""

    __slots__ = ("mesh", "transport")

    def __init__(self, mesh: Mesh, transport: Transport) -> None:
        self.mesh = mesh
        self.transport = transport

    @property
    def dispatcher(self) -> Any:
        # The `MessageDispatcher` (TransportHandler.dispatcher), passed through untouched:
        # typed Any so this module does not depend on the dispatcher's.
        return self.mesh.dispatcher

    def peer_up(self, hello: PeerHello) -> None:
        self.mesh._peer_up(hello, self.transport)

    def peer_down(self, process: ListenerId, reason: str) -> None:
        self.mesh._peer_dead(process, f"link lost: {reason}")

    def frame_received(self, process: ListenerId, frame: bytes) -> None:
        self.mesh.frames_received(process, (frame,))

    def frames_received(self, process: ListenerId, frames: Sequence[bytes]) -> None:
        self.mesh.frames_received(process, frames)

    def dial_failed(self, url: str, error: str) -> None:
        self.mesh.dial_errors[url] = error[:_MAX_ERROR_TEXT]


class Mesh:
    """The cross-process half of a dispatcher (created only when it has transports)."""

    # Slots: the hot paths read several of these per message (a slot is the fastest
    # attribute there is, and this class has too many for CPython's shared-key dicts).
    __slots__ = (
        "_refused_logged_at",
        "_refused_unlogged",
        "changed",
        "clock",
        "connect",
        "deliver",
        "dial_errors",
        "dispatcher",
        "dormant",
        "heartbeat_interval",
        "heartbeat_tolerance",
        "incarnation",
        "instances",
        "listen",
        "max_message_size",
        "members",
        "peers",
        "plugins",
        "process_id",
        "refused_frames",
        "registry",
        "remote_groups",
        "remote_listener",
        "replies",
        "seq",
        "stats",
        "task_group",
        "transport_options",
        "transports",
        "urls",
    )

    def __init__(
        self,
        process_id: ListenerId,
        registry: Registry,
        replies: Replies,
        deliver: Callable[[list[Message]], None],
        *,
        stats: DispatcherStats,
        plugins: pluggy.PluginManager,
        dispatcher: Any,
        listen: Sequence[str],
        connect: Sequence[str],
        transports: Sequence[Transport],
        transport_options: Mapping[str, Mapping[str, Any]],
        heartbeat_interval: float,
        heartbeat_tolerance: int,
        max_message_size: int,
    ) -> None:
        self.process_id = process_id
        self.registry = registry
        self.replies = replies
        self.deliver = deliver
        self.stats = stats
        self.plugins = plugins
        # Only for transports that serve non-dispatcher clients (TransportHandler.dispatcher).
        self.dispatcher = dispatcher
        self.task_group: anyio.abc.TaskGroup | None = None
        self.listen = tuple(listen)
        self.connect = tuple(connect)
        self.instances = {t.scheme: t for t in transports}
        self.transport_options = transport_options
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_tolerance = heartbeat_tolerance
        self.max_message_size = max_message_size
        self.incarnation = secrets.randbits(63)
        self.urls: tuple[str, ...] = ()
        self.transports: dict[str, Transport] = {}
        self.peers: dict[ListenerId, _Peer] = {}
        #: Peers that stopped answering but whose letters their transport keeps (see
        #: `PeerHello.durable_for`), until ``peer.until``.
        self.dormant: dict[ListenerId, _Peer] = {}
        self.members: dict[ListenerId, tuple[int, tuple[str, ...]]] = {}
        self.remote_listener: dict[ListenerId, ListenerId] = {}
        self.remote_groups: dict[ListenerId, tuple[ListenerId, ...]] = {}
        self.seq = 0
        # The last reason each dialed URL could not be reached, for wait_for_* timeouts.
        self.dial_errors: dict[str, str] = {}
        # Set (and replaced) whenever the directory changes, here or in a peer.
        self.changed = anyio.Event()
        #: Frames refused from peers (wrong shape, a lie, a reply nobody asked them for).
        self.refused_frames = 0
        self._refused_unlogged = 0
        self._refused_logged_at = -_REFUSED_LOG_INTERVAL
        # Liveness needs only a coarse monotonic clock; anyio.current_time() would ask
        # which event loop runs on every frame.
        self.clock = time.monotonic

    # ------------------------------------------------------------------ lifecycle

    def _transport_for(self, url: str) -> Transport:
        scheme = url.partition("://")[0]
        transport = self.transports.get(scheme)
        if transport is None:
            transport = self.instances.get(scheme)
            if transport is None:
                options = self.transport_options.get(scheme, {})
                transport = resolve_transport(url, self.plugins, options)
            self.transports[scheme] = transport
        return transport

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the transports (listening where asked), dial, and run the detector."""
        self.task_group = task_group
        by_scheme: dict[str, list[str]] = {}
        for url in self.listen:
            by_scheme.setdefault(url.partition("://")[0], []).append(url)
        for url in self.connect:
            by_scheme.setdefault(url.partition("://")[0], [])
        urls: list[str] = []
        # No URLs here: a listen spec like tcp://127.0.0.1:0 means nothing to a peer; each
        # transport advertises what it bound, and SNAPSHOTs gossip them all.
        hello = PeerHello(self.process_id, self.incarnation, ())
        for scheme, listen in by_scheme.items():
            transport = self._transport_for(listen[0] if listen else f"{scheme}://")
            serve = functools.partial(
                transport.serve, _TransportEvents(self, transport), hello, listen=listen
            )
            bound = await task_group.start(serve)
            urls.extend(bound)
        self.urls = tuple(urls)
        self.members[self.process_id] = (self.incarnation, self.urls)
        for url in self.connect:
            await self._transport_for(url).connect(url)
        task_group.start_soon(self._detector, name="dispatchio failure detector")

    async def stop(self) -> None:
        """Say goodbye to every peer and close the transports (flushing what they hold)."""
        goodbye = _wire.encode(_wire.GOODBYE, "closing")
        for process in list(self.peers):
            self._send(process, goodbye, quiet=True)
        for transport in self.transports.values():
            with anyio.CancelScope(shield=True):
                await transport.aclose()

    # ------------------------------------------------------------------ directory

    def has_listener(self, lid: ListenerId) -> bool:
        return lid in self.remote_listener

    def local_changed(self, op: str, lid: ListenerId, group: ListenerId | None) -> None:
        """A local registration changed: tell every peer (``op``: a `Registry` change code)
        and wake whoever waits for the directory (``wait_for_*`` count local listeners)."""
        self.seq += 1
        frame = _wire.encode(_wire.DELTA, self.seq, op, lid, group)
        for process in list(self.peers):
            self._send(process, frame, quiet=True)
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def _snapshot(self) -> bytes:
        registry = self.registry
        return _wire.encode(
            _wire.SNAPSHOT,
            _wire.MESH_VERSION,
            self.seq,
            list(registry.listeners),
            [[group, list(members)] for group, members in registry.groups.items()],
            _wire.members_field(self.members),
        )

    def _reindex(self) -> None:
        listeners: dict[ListenerId, ListenerId] = {}
        groups: dict[ListenerId, list[ListenerId]] = {}
        # Live peers first: a listener ID a live peer has wins over a dormant one's.
        for process, peer in (*self.peers.items(), *self.dormant.items()):
            for lid in peer.listeners:
                listeners.setdefault(lid, process)
            for group, members in peer.groups.items():
                if members:
                    groups.setdefault(group, []).append(process)
        self.remote_listener = listeners
        self.remote_groups = {g: tuple(ps) for g, ps in groups.items()}
        self._wake()

    def peer_entries(self) -> list[dict[str, Any]]:
        """The directory entry of every connected peer (see `MessageDispatcher.directory`)."""
        entries = []
        for process in sorted(self.peers, key=id_order):
            peer = self.peers[process]
            known = self.members.get(process)
            urls = known[1] if known is not None and known[1] else peer.hello.urls
            groups = [
                {"group": group, "members": sorted(members, key=id_order)}
                for group, members in sorted(peer.groups.items(), key=lambda g: id_order(g[0]))
                if members
            ]
            entries.append(
                {
                    "process": process,
                    "local": False,
                    "urls": list(urls),
                    "listeners": sorted(peer.listeners, key=id_order),
                    "groups": groups,
                }
            )
        return entries

    def remote_subscriber_count(self, group: ListenerId) -> int:
        return sum(
            len(peer.groups.get(group, ()))
            for peer in (*self.peers.values(), *self.dormant.values())
        )

    # ------------------------------------------------------------------ sending

    def encode(self, message: Message) -> bytes:
        """Encode an outgoing message, enforcing the size limit.

        Raises:
            InvalidMessageError: the content cannot cross processes.
            MessageTooLargeError: the encoded message is too large.
        """
        return _wire.encode_message(message, self.max_message_size)

    def forward(
        self, process: ListenerId, frame: bytes, message: Message, pending: Pending | None
    ) -> None:
        """Send a message frame to ``process``; count the reply it owes in ``pending``
        (the sender's wait for this message, None if nobody waits).

        Raises:
            OutboxFullError: the link to that process is full.
            TransportError: no link to that process any more, or it is dormant and the
                message awaits an answer (nobody can give one in time).
        """
        peer = self.peers.get(process)
        if peer is None:
            peer = self.dormant.get(process)
            if peer is None:
                raise TransportError(f"process {process!r} is not connected")
            if message.response_required:
                raise TransportError(
                    f"process {process!r} stopped answering {self.clock() - peer.last_heard:.1f}"
                    " s ago; letters to it are kept for its return, but nobody can answer now"
                )
            peer.transport.send(process, frame)  # kept for its return: no answer owed
            return
        peer.transport.send(process, frame)
        peer.sent = True
        if pending is not None:
            owed = pending.owed
            if owed is None:
                pending.owed = {process: 1}
            else:
                owed[process] = owed.get(process, 0) + 1

    def respond(self, response: Message, process: ListenerId) -> None:
        """Send a response (or returned letter) back to the process it answers."""
        try:
            frame = self.encode(response)
        except Exception as exc:  # content of a reply that cannot cross: say so instead
            error = format_error(HandlerError.code, f"the reply cannot be sent: {exc}")
            frame = self.encode(response.evolve(content=None, error=error))
        if not self._send(process, frame):
            self.stats.dropped_replies += 1

    def _send(self, process: ListenerId, frame: bytes, *, quiet: bool = False) -> bool:
        peer = self.peers.get(process) or self.dormant.get(process)
        if peer is None:
            return False
        try:
            peer.transport.send(process, frame)
        except (TransportError, OutboxFullError, MessageTooLargeError) as exc:
            if not quiet:
                logger.warning("could not send to process %r: %s", process, exc)
            return False
        peer.sent = True
        return True

    # ------------------------------------------------------------------ transport events

    def _peer_up(self, hello: PeerHello, transport: Transport) -> None:
        process = hello.process
        if process == self.process_id:
            logger.warning("a peer claims this process's own id %r; ignored", process)
            return
        old = self.peers.get(process)
        if old is not None:
            if old.hello.incarnation == hello.incarnation:
                old.hello = hello
                old.transport = transport
                self._greet(process)
                return
            self._peer_dead(process, "it restarted", clean=True)
        peer = _Peer(hello, transport, self.clock())
        asleep = self.dormant.pop(process, None)
        if asleep is not None:
            # Back: its old directory serves until its snapshot arrives (seq -1 makes
            # any delta before it ask for one).
            peer.listeners, peer.groups = asleep.listeners, asleep.groups
            if asleep.hello.incarnation == hello.incarnation:
                peer.seq = asleep.seq
        self.peers[process] = peer
        self.members[process] = (hello.incarnation, hello.urls)
        self._greet(process)
        # Gossip: everyone else learns of the newcomer (and dials it if they must).
        news = _wire.encode(_wire.MEMBERS, _wire.members_field({process: self.members[process]}))
        for other in list(self.peers):
            if other != process:
                self._send(other, news, quiet=True)
        self._reindex()

    def _greet(self, process: ListenerId) -> None:
        """A link is up: send our directory and ask for the peer's."""
        self._send(process, self._snapshot())
        self._send(process, _wire.SNAPSHOT_REQUEST_FRAME)

    def _declare_dead(self, process: ListenerId, reason: str, *, clean: bool = False) -> None:
        """End a peer whose link the transport may still hold, and have the link closed.

        Without the disconnect a peer that was only paused (SIGSTOP) would come back on
        the old link, whose frames `_frame` ignores, and never be served again; closed,
        it comes back through a new link, a handshake and peer_up, as after a restart.
        Not for a link the transport reported down, nor for a restart: there the
        transport holds the new link already. A durable peer goes dormant all the same
        (``clean``: it said goodbye, and is forgotten at once).
        """
        peer = self.peers.get(process)
        self._peer_dead(process, reason, clean=clean)
        if peer is not None:
            peer.transport.disconnect(process, reason)

    def _peer_dead(self, process: ListenerId, reason: str, *, clean: bool = False) -> None:
        """``process`` stopped: fail what it owes; keep it dormant unless ``clean``."""
        peer = self.peers.pop(process, None)
        if peer is None:
            if clean and self.dormant.pop(process, None) is not None:
                self._reindex()
            return
        durable_for = peer.hello.durable_for
        if durable_for > 0 and not clean:
            peer.until = self.clock() + durable_for
            self.dormant[process] = peer
            logger.info(
                "process %r stopped answering (%s); its listeners are kept %g s",
                process,
                reason,
                durable_for,
            )
        else:
            logger.info("process %r is gone: %s", process, reason)
        self._reindex()
        # What it still owes is in the pending entries (`Pending.owed`): a scan, as a
        # peer's death is rare and the send path then keeps no table of its own.
        lost = [
            (pending, owed.pop(process))
            for pending in self.replies.pending.values()
            if (owed := pending.owed) is not None and process in owed
        ]
        if not lost:
            return
        error = format_error(
            PeerLostError.code, f"process {process!r} is gone ({reason}) before answering"
        )
        route_response = self.replies.route_response
        for pending, count in lost:
            for _ in range(count):
                if not pending.live:  # an earlier failure ended its wait
                    break
                route_response(response_to(pending.message, None, None, process, error))

    def frames_received(self, process: ListenerId, frames: Sequence[bytes]) -> None:
        """Act on frames from ``process``, in order; each bad frame alone is dropped.

        Consecutive messages (not responses) are handed to the scheduler as one run
        of at most `_RUN`; any other frame first delivers the run before it. Frames
        from a peer not (or no longer: a goodbye among them) in the directory are
        dropped.
        """
        peer = self.peers.get(process)
        if peer is None:
            return
        peer.last_heard = self.clock()
        run: list[Message] = []
        read = _wire.read
        for frame in frames:
            try:
                item = read(frame)
            except _wire.WireError as exc:
                self._refused(process, exc)
                continue
            if isinstance(item, Message) and not item.is_response:
                run.append(item)
                if len(run) == _RUN:
                    self.deliver(run)
                    run = []
                continue
            if run:
                self.deliver(run)
                run = []
            self._act(process, peer, item)
            if self.peers.get(process) is not peer:
                return
        if run:
            self.deliver(run)

    def _act(self, process: ListenerId, peer: _Peer, item: Message | list[Any]) -> None:
        """Act on a response or a control frame (`frames_received`)."""
        try:
            if isinstance(item, Message):
                self._response(process, item)
                return
            kind = item[0]
            if kind == _wire.FANOUT:
                self._apply_fanout(process, item)
            elif kind == _wire.SNAPSHOT:
                self._apply_snapshot(peer, item)
            elif kind == _wire.DELTA:
                self._apply_delta(process, peer, item)
            elif kind == _wire.SNAPSHOT_REQUEST:
                self._send(process, self._snapshot())
            elif kind == _wire.MEMBERS:
                self._learn_members(item[1])
            elif kind == _wire.GOODBYE:
                self._declare_dead(
                    process,
                    f"it said goodbye ({item[1] if len(item) > 1 else ''})",
                    clean=True,
                )
        except (_wire.WireError, IndexError, TypeError, ValueError) as exc:
            # ValueError covers _Refused. Whatever a peer sends, the peer stays linked and
            # every other peer served: the frame alone is dropped.
            self._refused(process, exc)

    def _refused(self, process: ListenerId, exc: Exception) -> None:
        self.refused_frames += 1
        # A peer sending nothing but bad frames must not flood the log: one warning per
        # interval, the rest at DEBUG, counted in the next warning.
        now = self.clock()
        if now - self._refused_logged_at < _REFUSED_LOG_INTERVAL:
            self._refused_unlogged += 1
            logger.debug("dropped a bad frame from process %r: %s", process, exc)
            return
        more = self._refused_unlogged
        self._refused_unlogged = 0
        self._refused_logged_at = now
        logger.warning(
            "dropped a bad frame from process %r: %s%s",
            process,
            exc,
            f" ({more} more bad frames dropped since the last warning)" if more else "",
        )

    def _response(self, process: ListenerId, message: Message) -> None:
        replies = self.replies
        pending = replies.pending.get(message.id)  # type: ignore[arg-type]
        if pending is not None:
            owed = pending.owed
            count = 0 if owed is None else owed.get(process, 0)
            if count == 0:
                # Waited for, but not from this process: it must not answer (or fail) a
                # request this process sent elsewhere.
                raise _Refused(f"a reply to message {message.id!r}, which it was not sent")
            assert owed is not None
            if count > 1:
                owed[process] = count - 1
            else:
                del owed[process]
        replies.route_response(message)

    def tell_fanout(self, message: Message, copies: int) -> None:
        """A remote group message was fanned out here: tell its sender how many copies."""
        self._send(message.process, _wire.encode(_wire.FANOUT, message.id, copies))  # type: ignore[arg-type]

    def _apply_fanout(self, process: ListenerId, fields: list[Any]) -> None:
        _, message_id, copies = fields[:3]
        _check_id(message_id, "a FANOUT's message id")
        _check_count(copies, "a FANOUT's count of copies")
        replies = self.replies
        pending = replies.pending.get(message_id)
        if pending is None:
            return
        owed = pending.owed
        if owed is None or process not in owed:
            raise _Refused(f"a FANOUT for message {message_id!r}, which it was not sent")
        if copies == 0:
            del owed[process]
            error = format_error(UndeliverableError.code, f"no subscribers in process {process!r}")
            replies.route_response(
                response_to(pending.message, pending.message.content, None, process, error)
            )
            return
        pending.outstanding += copies - 1
        owed[process] = owed.get(process, 0) + copies - 1

    def _apply_snapshot(self, peer: _Peer, fields: list[Any]) -> None:
        _, _version, seq, listeners, groups, members = fields[:6]
        _check_count(seq, "a SNAPSHOT's sequence number")
        entries = len(_check_ids(listeners, "a SNAPSHOT's listeners"))
        if groups.__class__ is not list:
            raise _Refused("a SNAPSHOT's groups must be a list")
        claimed: dict[ListenerId, set[ListenerId]] = {}
        for entry in groups:
            if entry.__class__ is not list or len(entry) != 2:
                raise _Refused("each SNAPSHOT group must be [group, [listener...]]")
            group, lids = entry
            _check_id(group, "a SNAPSHOT's group")
            entries += len(_check_ids(lids, "a SNAPSHOT group's members"))
            if entries > MAX_PEER_ENTRIES:
                break
            claimed[group] = set(lids)
        if entries > MAX_PEER_ENTRIES:
            raise _Refused(
                f"a SNAPSHOT of more than {MAX_PEER_ENTRIES} directory entries (MAX_PEER_ENTRIES)"
            )
        self._check_members(members)
        peer.seq = seq
        peer.listeners = set(listeners)
        peer.groups = claimed
        self._reindex()
        self._learn_members(members)

    def _apply_delta(self, process: ListenerId, peer: _Peer, fields: list[Any]) -> None:
        _, seq, op, lid, group = fields[:5]
        _check_count(seq, "a DELTA's sequence number")
        if op.__class__ is not str or op not in _DELTA_OPS:
            raise _Refused(f"a DELTA's operation must be one of {sorted(_DELTA_OPS)}")
        _check_id(lid, "a DELTA's listener")
        if op in (SUBSCRIBED, UNSUBSCRIBED):
            _check_id(group, "a DELTA's group")
        if seq != peer.seq + 1:
            self._send(process, _wire.SNAPSHOT_REQUEST_FRAME)
            return
        peer.seq = seq
        if op in (REGISTERED, SUBSCRIBED) and (
            len(peer.listeners) + sum(len(m) for m in peer.groups.values()) >= MAX_PEER_ENTRIES
        ):
            raise _Refused(f"a DELTA past {MAX_PEER_ENTRIES} directory entries (MAX_PEER_ENTRIES)")
        if op == REGISTERED:
            peer.listeners.add(lid)
        elif op == UNREGISTERED:
            peer.listeners.discard(lid)
            for members in peer.groups.values():
                members.discard(lid)
        elif op == SUBSCRIBED:
            peer.groups.setdefault(group, set()).add(lid)
        elif op == UNSUBSCRIBED:
            peer.groups.get(group, set()).discard(lid)
        self._reindex()

    @staticmethod
    def _check_members(members: Any) -> None:
        if members.__class__ is not list:
            raise _Refused("the members must be a list")
        for entry in members:
            if entry.__class__ is not list or len(entry) != 3:
                raise _Refused("each member must be [process, incarnation, [url...]]")
            process, incarnation, urls = entry
            _check_id(process, "a member's process")
            _check_count(incarnation, "a member's incarnation")
            if urls.__class__ is not list or any(url.__class__ is not str for url in urls):
                raise _Refused("a member's URLs must be a list of strings")

    def _learn_members(self, members: list[Any]) -> None:
        self._check_members(members)
        for process, incarnation, urls in members:
            if process == self.process_id:
                continue
            known = self.members.get(process)
            if known is not None and known[0] == incarnation and known[1]:
                continue
            if not urls:
                continue
            if known is None and len(self.members) >= MAX_MEMBERS:
                logger.warning(
                    "ignored news of process %r: %d processes known already (MAX_MEMBERS)",
                    process,
                    len(self.members),
                )
                continue
            self.members[process] = (incarnation, tuple(urls))
            if process in self.peers:
                continue
            for url in urls:
                scheme = url.partition("://")[0]
                if scheme in self.transports:
                    # Dialing is queued by the transport; failures are its to retry.
                    self._dial(url)
                    break

    def _dial(self, url: str) -> None:
        transport = self.transports[url.partition("://")[0]]
        task_group = self.task_group
        if task_group is not None:
            task_group.start_soon(self._connect, transport, url)

    @staticmethod
    async def _connect(transport: Transport, url: str) -> None:
        try:
            await transport.connect(url)
        except (TransportError, TransportConfigError) as exc:
            logger.warning("cannot dial %s: %s", url, exc)

    # ------------------------------------------------------------------ liveness

    async def _detector(self) -> None:
        interval = self.heartbeat_interval
        limit = interval * self.heartbeat_tolerance
        tick = interval / 2
        clock = self.clock
        while True:
            due = clock() + tick
            await anyio.sleep(tick)
            now = clock()
            if now - due > tick / 2:
                # Woken late: this process's own loop stalled, and the frames its peers
                # sent meanwhile may still wait unread in the sockets (trio may run this
                # task before the readers woken with it). Let them run before judging
                # anyone's silence; a real silence is judged a moment later all the same.
                await anyio.sleep(tick / 10)
                now = clock()
            for process, peer in list(self.peers.items()):
                if now - peer.last_heard > limit:
                    self._declare_dead(process, f"no frame for {limit:g} s")
                elif not peer.sent:  # nothing went to it for a tick (interval / 2)
                    self._send(process, _wire.HEARTBEAT_FRAME, quiet=True)
                peer.sent = False
            expired = [p for p, peer in self.dormant.items() if now >= peer.until]
            for process in expired:
                # Its letters stay with the transport (a Kafka inbox) for its return.
                logger.info("process %r stayed away past its durable_for; forgotten", process)
                del self.dormant[process]
            if expired:
                self._reindex()
