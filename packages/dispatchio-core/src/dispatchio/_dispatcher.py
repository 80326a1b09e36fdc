"""The message dispatcher: routes messages to listeners and replies back to senders.

How the asynchronous side runs (the "why" behind the shape of this module):

* ``send`` only appends to one FIFO queue; nothing per message spawns a task, opens a
  cancel scope or creates an anyio Event (each costs microseconds).
* One worker task, the *leader*, drains the queue and starts every handler by hand
  (``coro.send(None)``). A handler that finishes without suspending (every sync
  callback, most async ones) costs no task. A handler that does suspend keeps the
  worker that started it (see `dispatchio._backend.resume`); that worker hands the
  queue to an idle worker, or spawns one, and carries on with the handler. So handlers
  start in queue order, and a handler that awaits never stalls anyone else.
* Replies resolve native futures; every deadline lives in one heap served by one task.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import os
import secrets
import socket
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel

from dispatchio._backend import Backend, Future, current_backend, resume
from dispatchio._basic import Action, BasicMessageListener
from dispatchio._errors import (
    DispatcherNotRunningError,
    DispatchError,
    DuplicateListenerError,
    HandlerError,
    OutboxFullError,
    ReplyTimeoutError,
    SyncSendError,
    TransportError,
    UndeliverableError,
    error_from_message,
    format_error,
)
from dispatchio._listener import MessageListener
from dispatchio._message import (
    DEFERRED,
    UNHANDLED,
    DeferredType,
    ListenerId,
    Message,
    stamp,
)
from dispatchio._pending import GATHER, LETTER, REQUEST, Expired, Pending, TimerHeap, is_decline
from dispatchio.transport import Transport

if TYPE_CHECKING:
    from types import TracebackType

    import pluggy

    from dispatchio._mesh import Mesh
    from dispatchio._thread import DispatcherThread

logger = logging.getLogger("dispatchio")

_BASIC_HANDLE: Final = BasicMessageListener.handle_message
_MAX_IDLE_WORKERS: Final = 8
_LEADER_BATCH: Final = 512  # messages the leader handles before letting other tasks run
_CoroutineType: Final = types.CoroutineType
_OBSERVATION_HOOKS: Final = (
    "dispatchio_message_sent",
    "dispatchio_message_delivered",
    "dispatchio_message_returned",
    "dispatchio_reply_timed_out",
    "dispatchio_handler_failed",
    "dispatchio_message_unmatched",
)
_INLINE_STREAK: Final = 64  # requests answered inline before a checkpoint
_REMOTE_STREAK: Final = 64  # sends to other processes before a checkpoint


class DispatcherStats:
    """Counters of the events a sender might otherwise never see. Read-only for users."""

    __slots__ = (
        "discarded",
        "dropped_replies",
        "handler_errors",
        "late_replies",
        "returned",
        "timeouts",
        "unmatched",
    )

    def __init__(self) -> None:
        #: Messages a listener declined (no rule matched).
        self.unmatched = 0
        #: Letters returned to their sender (undeliverable, timeout, handler error).
        self.returned = 0
        #: Waits that ended in a timeout.
        self.timeouts = 0
        #: Handler exceptions on the asynchronous path.
        self.handler_errors = 0
        #: Replies that arrived after their sender stopped waiting (dropped).
        self.late_replies = 0
        #: Replies and returned letters with nowhere to go (no such sender listener).
        self.dropped_replies = 0
        #: Messages still queued or held behind a blocking message when the dispatcher closed.
        self.discarded = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"DispatcherStats({self.as_dict()})"


class _Hold:
    """A blocking message in progress: later messages to ``key`` wait until it is handled."""

    __slots__ = ("is_group", "key", "remaining")

    def __init__(self, key: ListenerId, is_group: bool, remaining: int) -> None:
        self.key = key
        self.is_group = is_group
        self.remaining = remaining


class MessageDispatcher:
    """Routes messages to listeners, in this process and (with transports) beyond it.

    One per process in normal use (`dispatchio.get_dispatcher` returns the process
    default), but any number may be created, for example one per test.

    Synchronous sends (`send_sync`) work anywhere, with or without an event loop. The
    asynchronous API (`send`, `request`, `gather`, `reply`) needs the dispatcher to be
    running: ``async with dispatcher:`` on asyncio or trio, or `in_thread` for plain
    synchronous programs.

    Args:
        process_id: This process's ID (int or str), the return address stamped on every
            message sent. Default: ``"<host>:<pid>:<random>"``.
        reply_timeout: Default seconds to wait for a reply (`request`, `gather`, and
            `send` with ``response_required=True``).
        plugins: The plugin manager whose hooks observe this dispatcher. Default: the
            process-wide one from `dispatchio.default_plugin_manager` (entry points
            loaded on first use).
        listen: URLs to accept other processes on, e.g. ``["tcp://127.0.0.1:7400"]``
            (port 0 picks a free port; see `listen_urls`). The scheme picks the transport
            plugin.
        connect: URLs of processes to join. Joining one member of a set of processes
            reaches all of them.
        transports: Transport instances to use for their scheme (for options a URL cannot
            carry, such as an ``ssl.SSLContext``).
        transport_options: Options per scheme for transports built from URLs, e.g.
            ``{"tcp": {"secret": "..."}}``.
        heartbeat_interval, heartbeat_tolerance: A peer silent for interval x tolerance
            seconds is declared dead, and replies it owes fail with `PeerLostError`.
        max_message_size: Largest encoded message sent to another process, in bytes.
    """

    def __init__(
        self,
        process_id: ListenerId | None = None,
        *,
        reply_timeout: float = 10.0,
        plugins: pluggy.PluginManager | None = None,
        listen: Sequence[str] = (),
        connect: Sequence[str] = (),
        transports: Sequence[Transport] = (),
        transport_options: Mapping[str, Mapping[str, Any]] | None = None,
        heartbeat_interval: float = 1.0,
        heartbeat_tolerance: int = 3,
        max_message_size: int = 1 << 20,
    ) -> None:
        if process_id is None:
            process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        if not (isinstance(process_id, (int, str)) and not isinstance(process_id, bool)):
            raise TypeError(f"process_id must be an int or a str, got {process_id!r}")
        if not reply_timeout > 0:  # also refuses NaN
            raise ValueError(f"reply_timeout must be > 0, got {reply_timeout!r}")
        if isinstance(listen, str) or isinstance(connect, str):
            raise TypeError("listen= and connect= take a list of URLs, not one string")
        if not heartbeat_interval > 0 or heartbeat_tolerance < 1:
            raise ValueError("heartbeat_interval must be > 0 and heartbeat_tolerance >= 1")
        self._mesh_config: dict[str, Any] | None = None
        if listen or connect or transports:
            self._mesh_config = {
                "listen": tuple(listen),
                "connect": tuple(connect),
                "transports": tuple(transports),
                "transport_options": dict(transport_options or {}),
                "heartbeat_interval": heartbeat_interval,
                "heartbeat_tolerance": heartbeat_tolerance,
                "max_message_size": max_message_size,
            }
        self._mesh: Mesh | None = None
        self.process_id: ListenerId = process_id
        self.reply_timeout = reply_timeout
        self.stats = DispatcherStats()
        self._listeners: dict[ListenerId, MessageListener] = {}
        self._groups: dict[ListenerId, dict[ListenerId, MessageListener]] = {}
        # Snapshot per group, rebuilt on (un)subscribe, so a send iterates a tuple that a
        # handler (un)subscribing cannot change under it.
        self._members: dict[ListenerId, tuple[tuple[ListenerId, MessageListener], ...]] = {}
        # 64 random bits, then a counter: unique across processes without coordination.
        self._ids = iterator_of_ids()
        if plugins is None:
            from dispatchio._plugins import default_plugin_manager

            plugins = default_plugin_manager()
        self.plugins = plugins
        self._hook = plugins.hook
        self._implemented: frozenset[str] = frozenset()
        self._observed = False
        self.refresh_hooks()

        self._backend: Backend | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._queue: collections.deque[Message] = collections.deque()
        self._wake: Future | None = None  # the parked leader's future
        self._idle: list[Future] = []  # parked followers
        self._pending: dict[ListenerId, Pending] = {}
        self._expired = Expired()
        self._timers = TimerHeap()
        self._timer_wake: Future | None = None
        self._drained: Future | None = None  # resolved when the leader runs out of work
        self._timer_deadline = math.inf
        self._held_dest: dict[ListenerId, collections.deque[Message]] = {}
        self._held_group: dict[ListenerId, collections.deque[Message]] = {}
        self._high_water = 65536
        self._inline_streak = 0
        self._remote_streak = 0

    # ------------------------------------------------------------------ registry

    def refresh_hooks(self) -> None:
        """Re-check which observation hooks have implementations.

        The dispatcher checks once, at construction and when it starts, so a hook nobody
        implements costs one attribute test per message. Call this after registering an
        observer plugin on a running dispatcher's plugin manager.
        """
        self._implemented = frozenset(
            name for name in _OBSERVATION_HOOKS if getattr(self._hook, name).get_hookimpls()
        )
        self._observed = bool(self._implemented)

    def register(self, listener: MessageListener) -> MessageListener:
        """Register a listener under its `MessageListener.id`; return it.

        Raises:
            ValueError: the listener's ID is None (anonymous listeners can only be chained).
            TypeError: not a `MessageListener`, or its ID is not an int or a str.
            DuplicateListenerError: another listener already has that ID.
        """
        if not isinstance(listener, MessageListener):
            raise TypeError(f"expected a MessageListener, got {listener!r}")
        lid = listener.id
        if lid is None:
            raise ValueError(f"{listener!r} has no id, so it cannot be registered")
        if not isinstance(lid, (int, str)) or isinstance(lid, bool):
            raise TypeError(f"a listener id must be an int or a str, got {lid!r}")
        existing = self._listeners.get(lid)
        if existing is not None:
            if existing is listener:
                return listener
            raise DuplicateListenerError(f"a listener with id {lid!r} is already registered")
        self._listeners[lid] = listener
        if self._mesh is not None:
            self._mesh.local_changed("r", lid, None)
        return listener

    def unregister(self, listener: MessageListener | ListenerId) -> None:
        """Remove a listener (given itself or its ID) and all its group subscriptions.

        Messages already queued for it come back to their senders as undeliverable.

        Raises:
            KeyError: no such listener is registered.
        """
        lid = self._id_of(listener)
        if lid not in self._listeners:
            raise KeyError(f"no listener with id {lid!r} is registered")
        del self._listeners[lid]
        for group in [g for g, members in self._groups.items() if lid in members]:
            self._unsubscribe(group, lid)
        if self._mesh is not None:
            self._mesh.local_changed("u", lid, None)

    def subscribe(self, group: ListenerId, listener: MessageListener | ListenerId) -> None:
        """Subscribe a registered listener to a group. Subscribing twice is harmless.

        Raises:
            KeyError: the listener is not registered.
        """
        lid = self._id_of(listener)
        registered = self._listeners.get(lid)
        if registered is None:
            raise KeyError(f"no listener with id {lid!r} is registered")
        members = self._groups.setdefault(group, {})
        members[lid] = registered
        self._members[group] = tuple(members.items())
        if self._mesh is not None:
            self._mesh.local_changed("s", lid, group)

    def unsubscribe(self, group: ListenerId, listener: MessageListener | ListenerId) -> None:
        """Remove a listener from a group.

        Raises:
            KeyError: the listener is not subscribed to that group.
        """
        lid = self._id_of(listener)
        if lid not in self._groups.get(group, ()):
            raise KeyError(f"listener {lid!r} is not subscribed to group {group!r}")
        self._unsubscribe(group, lid)
        if self._mesh is not None:
            self._mesh.local_changed("x", lid, group)

    def _unsubscribe(self, group: ListenerId, lid: ListenerId) -> None:
        members = self._groups[group]
        del members[lid]
        if members:
            self._members[group] = tuple(members.items())
        else:
            del self._groups[group]
            del self._members[group]

    @staticmethod
    def _id_of(listener: MessageListener | ListenerId) -> ListenerId:
        if isinstance(listener, MessageListener):
            if listener.id is None:
                raise ValueError(f"{listener!r} has no id")
            return listener.id
        return listener

    @property
    def listeners(self) -> dict[ListenerId, MessageListener]:
        """A copy of the registry: ID to listener."""
        return dict(self._listeners)

    def subscribers(self, group: ListenerId) -> list[ListenerId]:
        """The IDs subscribed to a group, in subscription order."""
        return [lid for lid, _ in self._members.get(group, ())]

    @property
    def listen_urls(self) -> tuple[str, ...]:
        """The URLs this dispatcher accepts other processes on (ports resolved), once running."""
        return () if self._mesh is None else self._mesh.urls

    @property
    def peers(self) -> frozenset[ListenerId]:
        """The IDs of the other processes currently connected."""
        return frozenset(()) if self._mesh is None else frozenset(self._mesh.peers)

    async def wait_for_peer(self, process_id: ListenerId, *, timeout: float = 10.0) -> None:
        """Wait until the process ``process_id`` is connected.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        await self._wait_until(lambda mesh: mesh is not None and process_id in mesh.peers, timeout)

    async def wait_for_listener(self, listener_id: ListenerId, *, timeout: float = 10.0) -> None:
        """Wait until some process (this one included) has a listener ``listener_id``.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        await self._wait_until(
            lambda mesh: (
                listener_id in self._listeners
                or (mesh is not None and listener_id in mesh.remote_listener)
            ),
            timeout,
        )

    async def wait_for_subscribers(
        self, group: ListenerId, count: int, *, timeout: float = 10.0
    ) -> None:
        """Wait until ``group`` has at least ``count`` subscribers across all processes.

        Raises:
            TimeoutError: not within ``timeout`` seconds.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        await self._wait_until(
            lambda mesh: (
                len(self._groups.get(group, ()))
                + (0 if mesh is None else mesh.remote_subscriber_count(group))
                >= count
            ),
            timeout,
        )

    async def _wait_until(self, condition: Callable[[Mesh | None], bool], timeout: float) -> None:
        self._require_running()
        with anyio.fail_after(timeout):
            while not condition(self._mesh):
                if self._mesh is None:
                    await anyio.sleep(timeout)  # nothing remote can change it: time out
                else:
                    await self._mesh.changed.wait()

    @property
    def running(self) -> bool:
        """Whether the asynchronous machinery runs (inside ``async with dispatcher:``)."""
        return self._backend is not None and not self._closing

    # ------------------------------------------------------------------ synchronous sends

    def send_sync(self, message: Message) -> Any:
        """Deliver a message now, in this thread, and return the handler's reply.

        A phone call rather than a letter: the handler runs inside this call (no event
        loop needed). The asynchronous-only fields (``blocking``, ``response_required``)
        have no effect here.

        Returns:
            For a destination, the handler's return value. For a group, the list of the
            subscribers' return values in subscription order, leaving out subscribers that
            declined the message (no rule matched).

        Raises:
            InvalidMessageError: a field is invalid.
            UndeliverableError: no such destination, an empty group, or the destination
                declined the message.
            SyncSendError: the handler is an async callback, or lives in another process.
            Exception: whatever the handler raised, unchanged.
        """
        stamp(message, self._ids, self.process_id)
        if self._observed:
            self._notify_sent(message)
        group = message.group
        if group is None:
            listener = self._listeners.get(message.destination)  # type: ignore[arg-type]
            if listener is None:
                mesh = self._mesh
                if mesh is not None and mesh.has_listener(message.destination):  # type: ignore[arg-type]
                    raise SyncSendError(
                        f"listener {message.destination!r} is in another process; send_sync"
                        " reaches only this process (use send() or request())"
                    )
                raise self._nobody(message)
            if self._observed:
                self._notify_delivered(message, listener)
            result = listener.handle_message_sync(message)
            if result is UNHANDLED:
                self._unmatched(message, listener)
                raise _declined(message)
            return result
        if self._mesh is not None and group in self._mesh.remote_groups:
            raise SyncSendError(
                f"group {group!r} has subscribers in other processes; send_sync reaches only"
                " this process (use send() or gather())"
            )
        members = self._members.get(group)
        if not members:
            raise self._nobody(message)
        results: list[Any] = []
        append = results.append
        observed = self._observed
        for _, listener in members:
            if observed:
                self._notify_delivered(message, listener)
            result = listener.handle_message_sync(message)
            if result is UNHANDLED:
                self._unmatched(message, listener)
            else:
                append(result)
        return results

    def _nobody(self, message: Message) -> DispatchError:
        # The one place that decides "remote or nobody" for a sender; transports (a later
        # layer) answer the remote half.
        if message.group is None:
            return UndeliverableError(
                f"no listener {message.destination!r} for {message.type!r}", message=message
            )
        return UndeliverableError(
            f"group {message.group!r} has no subscribers for {message.type!r}", message=message
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> MessageDispatcher:
        if self._backend is not None:
            raise DispatchError("this dispatcher is already running")
        self.refresh_hooks()
        backend = current_backend()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._backend = backend
        self._task_group = task_group
        self._closing = False
        task_group.start_soon(self._run_timers, name="dispatchio timers")
        task_group.start_soon(self._worker, True, name="dispatchio worker")
        if self._mesh_config is not None:
            from dispatchio._mesh import Mesh

            self._mesh = Mesh(self, **self._mesh_config)
            try:
                await self._mesh.start(task_group)
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        try:
            if exc_type is None:
                await self._drain()
            if self._mesh is not None:
                await self._mesh.stop()
        finally:
            self._mesh = None
            self._closing = True
            # Nothing may wake a worker that is about to be cancelled.
            self._wake = self._timer_wake = self._drained = None
            self._idle.clear()
            for pending in list(self._pending.values()):
                self._finish(pending)
                future = pending.future
                if future is not None and not future.done():
                    future.set_exception(
                        DispatchError("the dispatcher was closed before a reply arrived")
                    )
            self._timers.clear()
            discarded = len(self._queue) + sum(
                len(held) for held in (*self._held_dest.values(), *self._held_group.values())
            )
            if discarded:
                self.stats.discarded += discarded
                logger.warning("dispatcher closed with %d message(s) never delivered", discarded)
            task_group.cancel_scope.cancel()
            try:
                # The caller's exception is not the task group's business: it propagates
                # as it is, never wrapped in an exception group.
                await task_group.__aexit__(None, None, None)
            finally:
                self._backend = None
                self._task_group = None
                self._queue.clear()
                self._held_dest.clear()
                self._held_group.clear()
                self._idle.clear()
                self._wake = None
                self._timer_wake = None
                self._timer_deadline = math.inf
        return None

    async def _drain(self) -> None:
        """Let the leader deliver everything already accepted (bounded by the reply timeout)."""
        backend = self._backend
        assert backend is not None
        with anyio.move_on_after(self.reply_timeout):
            while self._queue or self._wake is None:
                waiter = self._drained = backend.new_future()
                await waiter

    def in_thread(self, *, backend: str = "asyncio") -> DispatcherThread:
        """Return a `DispatcherThread` that runs this dispatcher in a background thread.

        For plain synchronous programs (a game loop, a robot control thread)::

            with dispatcher.in_thread() as remote:
                reply = remote.request(Message("ping", destination="pong"))
        """
        from dispatchio._thread import DispatcherThread

        return DispatcherThread(self, backend=backend)

    def _require_running(self) -> Backend:
        backend = self._backend
        if backend is None or self._closing:
            raise DispatcherNotRunningError(
                "the dispatcher is not running: use `async with dispatcher:` (or"
                " dispatcher.in_thread()) before send(), request(), gather() or reply()"
            )
        return backend

    # ------------------------------------------------------------------ asynchronous sends

    def _stamp(self, message: Message) -> None:
        stamp(message, self._ids, self.process_id)
        if self._observed:
            self._notify_sent(message)

    def _route(self, message: Message) -> tuple[bool, tuple[ListenerId, ...]]:
        """The routing decision for an outgoing message, made here only.

        Returns whether a local listener takes it, and the other processes it must go to.
        """
        group = message.group
        mesh = self._mesh
        if group is None:
            dest = message.destination
            if dest in self._listeners:
                return True, ()
            if mesh is not None:
                process = mesh.remote_listener.get(dest)  # type: ignore[arg-type]
                if process is not None:
                    return False, (process,)
            return False, ()
        remote = () if mesh is None else mesh.remote_groups.get(group, ())
        return group in self._members, remote

    def _transmit(self, message: Message, frame: bytes, remote: tuple[ListenerId, ...]) -> None:
        """Send an outgoing message to other processes (after its wait, if any, is set up).

        Raises:
            OutboxFullError, UndeliverableError: for a message to one destination; for a
                group, a copy that cannot go counts as that process's failed answer.
        """
        mesh = self._mesh
        assert mesh is not None
        for process in remote:
            try:
                mesh.forward(process, frame, message)
            except (OutboxFullError, TransportError) as exc:
                pending = self._pending.get(message.id)  # type: ignore[arg-type]
                mine = pending is not None and pending.message is message
                if message.group is None:
                    if mine:
                        self._finish(pending)  # type: ignore[arg-type]
                    if isinstance(exc, OutboxFullError):
                        raise
                    raise UndeliverableError(str(exc), message=message) from exc
                if mine:
                    full = isinstance(exc, OutboxFullError)
                    code = OutboxFullError.code if full else UndeliverableError.code
                    self._route_response(
                        Message(
                            message.type,
                            None,
                            id=message.id,
                            destination=message.source,
                            process=process,
                            is_response=True,
                            error=format_error(code, str(exc)),
                        )
                    )

    async def send(self, message: Message, *, reply_timeout: float | None = None) -> None:
        """Send a message and return as soon as it is accepted (never waits for the handler).

        The handler's reply, if any, comes back to the listener named by
        ``message.source`` as a response message (``is_response=True``, same ``id``).
        Failures come back the same way, letter style, with ``error`` set:

        * nobody can receive it: ``undeliverable``, with the original content, at once;
        * ``response_required=True`` and no reply within ``reply_timeout`` (default: the
          dispatcher's): ``timeout``;
        * the handler raised and ``response_required=True``: ``handler_error``.

        Args:
            message: The message; ``id`` and ``process`` are assigned when None.
            reply_timeout: Seconds to wait for a reply when ``response_required`` is set.

        Raises:
            InvalidMessageError: a field is invalid.
            UndeliverableError: nobody can receive it and there is no registered source
                listener to return it to.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
            DispatchError: ``response_required`` is set and the message's ``id`` is already
                awaiting replies.
            ValueError: ``reply_timeout`` is not > 0 (``math.inf`` waits forever).
        """
        backend = self._require_running()
        _check_timeout(reply_timeout)
        self._stamp(message)
        local, remote = self._route(message)
        if not local and not remote:
            if message.source not in self._listeners:
                raise self._nobody(message)
            self._return_letter(message, self._nobody(message))
            return
        frame = self._mesh.encode(message) if remote else b""  # type: ignore[union-attr]
        if message.response_required:
            if message.id in self._pending:
                raise DispatchError(f"message id {message.id!r} is already awaiting replies")
            pending = Pending(LETTER, message, None)
            pending.outstanding = 1 if message.group is None else len(remote)
            self._wait_for(pending, backend, reply_timeout)
        if local:
            self._enqueue(message)
        if remote:
            self._transmit(message, frame, remote)
            self._remote_streak += 1
        if len(self._queue) > self._high_water or self._remote_streak >= _REMOTE_STREAK:
            # Let the leader and the transports' writers run: a loop of sends that never
            # awaits anything else would otherwise fill queues and outboxes.
            self._remote_streak = 0
            await anyio.lowlevel.checkpoint()

    async def request(self, message: Message, *, timeout: float | None = None) -> Message:
        """Send a message and return the reply (the first one, for a group).

        Sets ``response_required`` on the message. A handler that returns None replies
        with content None; one that returns `DEFERRED` replies later through `reply`.

        Args:
            message: The message; ``id`` and ``process`` are assigned when None.
            timeout: Seconds to wait for the reply (default: the dispatcher's
                ``reply_timeout``).

        Returns:
            The response message: ``is_response=True``, the request's ``id``, ``source``
            the responder, ``content`` the reply.

        Raises:
            UndeliverableError: at once when nobody can receive it, or the receiver (every
                subscriber, for a group) declined it.
            ReplyTimeoutError: no reply in time. A reply arriving later is dropped and
                counted in ``stats.late_replies``.
            HandlerError: the handler raised (every subscriber's, for a group).
            InvalidMessageError: a field is invalid.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
            DispatchError: the message's ``id`` is already awaiting replies, or the
                dispatcher closed first.
            ValueError: ``timeout`` is not > 0 (``math.inf`` waits forever).

        Cancelling the caller stops the wait; a reply arriving afterwards is dropped.
        """
        return await self._await_replies(REQUEST, message, timeout)  # type: ignore[no-any-return]

    async def gather(self, message: Message, *, timeout: float | None = None) -> list[Message]:
        """Send a message (usually to a group) and return every reply that arrives in time.

        Returns as soon as every subscriber has answered, or at the timeout with the
        replies so far. Subscribers that decline the message are not waited for; a
        subscriber whose handler raised contributes a response with ``error`` set.

        Raises:
            UndeliverableError: at once when nobody can receive it.
            InvalidMessageError, DispatcherNotRunningError, DispatchError, ValueError: as
                `request`.
        """
        return await self._await_replies(GATHER, message, timeout)  # type: ignore[no-any-return]

    async def _await_replies(self, kind: int, message: Message, timeout: float | None) -> Any:
        backend = self._require_running()
        _check_timeout(timeout)
        message.response_required = True
        self._stamp(message)
        local, remote = self._route(message)
        if not local and not remote:
            raise self._nobody(message)
        frame = self._mesh.encode(message) if remote else b""  # type: ignore[union-attr]
        message_id = message.id
        assert message_id is not None
        if message_id in self._pending:
            raise DispatchError(f"message id {message_id!r} is already awaiting replies")
        answer: Any = None
        if kind == REQUEST and local and self._wake is not None and not self._queue:
            answer = self._answer_inline(message)
            if answer.__class__ is Message:
                self._inline_streak += 1
                if self._inline_streak >= _INLINE_STREAK:
                    # Answers computed inline never suspend; let other tasks run now and then.
                    self._inline_streak = 0
                    await anyio.lowlevel.checkpoint()
                return answer
        future = backend.new_future()
        pending = Pending(kind, message, future)
        pending.outstanding = 1 if message.group is None else len(remote)
        self._wait_for(pending, backend, timeout)
        if local and answer is not DEFERRED:
            self._enqueue(message)
        if remote:
            self._transmit(message, frame, remote)
        try:
            return await future
        finally:
            if pending.live:  # cancelled while waiting
                self._finish(pending)
                self._expired.add(message_id)

    def _answer_inline(self, message: Message) -> Message | DeferredType | None:
        """Answer a request at once when its handler is a plain callback and nothing waits.

        With the queue empty and the leader parked, no earlier message can still be due
        to this destination, so running the callback here keeps the order of handling
        and saves the two task switches of a round trip through the leader.

        Returns the response; DEFERRED when the callback ran but will answer later (a
        coroutine it returned runs in a task of its own); or None, having done nothing,
        when the request must take the queue.
        """
        dest = message.destination
        if dest is None or message.blocking or (self._held_dest and dest in self._held_dest):
            return None
        listener: Any = self._listeners[dest]
        try:
            while type(listener).handle_message is _BASIC_HANDLE:
                rule = listener.match(message)
                if rule is None or rule.action is Action.QUEUE:
                    return None
                if rule.action is Action.ASYNC_CALLBACK:
                    return None
                if rule.action is Action.LISTENER:
                    listener = rule.target
                    continue
                if self._observed:
                    self._notify_delivered(message, self._listeners[dest])
                result = rule.target(message)
                break
            else:
                return None
        except Exception as exc:
            self._failed(message, exc, respond=False)
            raise HandlerError(f"{type(exc).__name__}: {exc}", message=message) from exc
        if result is UNHANDLED:
            self._unmatched(message, listener)
            raise _declined(message)
        deferred: bool = result is DEFERRED
        if result.__class__ is _CoroutineType:
            assert self._task_group is not None
            self._task_group.start_soon(self._await_handler, message, result)
            deferred = True
        if deferred:
            return DEFERRED
        return Message(
            message.type,
            result,
            id=message.id,
            source=dest,
            destination=message.source,
            process=self.process_id,
            is_response=True,
        )

    def _deliver_incoming(self, message: Message) -> None:
        """Take a message that arrived from another process.

        A plain callback runs at once, as soon as its frame is decoded, when that cannot
        change the order of handling (nothing queued, the leader parked, no hold on the
        destination); everything else takes the queue like a local send.
        """
        dest = message.destination
        if (
            self._wake is None
            or self._queue
            or dest is None
            or message.blocking
            or (self._held_dest and dest in self._held_dest)
        ):
            self._enqueue(message)
            return
        listener: Any = self._listeners.get(dest)
        if listener is None or type(listener).handle_message is not _BASIC_HANDLE:
            self._enqueue(message)
            return
        try:
            rule = listener.match(message)
        except Exception:
            self._enqueue(message)  # the leader reports the failure in the usual way
            return
        if rule is None or rule.action is not Action.CALLBACK:
            self._enqueue(message)
            return
        if self._observed:
            self._notify_delivered(message, listener)
        try:
            result = rule.target(message)
        except Exception as exc:
            self._failed(message, exc)
            return
        if result.__class__ is _CoroutineType:
            assert self._task_group is not None
            self._task_group.start_soon(self._await_handler, message, result)
            return
        self._settle(message, result)

    async def _await_handler(self, message: Message, coro: Any) -> None:
        """Run a not-yet-started handler coroutine in a task of its own, then settle it."""
        try:
            result = await coro
        except Exception as exc:
            self._failed(message, exc)
        else:
            self._settle(message, result)

    async def reply(self, message: Message, content: Any = None) -> None:
        """Answer a message whose handler returned `DEFERRED` (or that sat on a queue).

        Works like the handler returning ``content`` late: the reply goes to the sender
        (to its waiting `request`, or to its source listener), and a blocking message
        releases its destination. ``content`` None sends a reply only when the sender
        expects one.

        Raises:
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        self._require_running()
        self._settle(message, content)

    def _wait_for(self, pending: Pending, backend: Backend, timeout: float | None) -> None:
        message_id = pending.message.id
        assert message_id is not None
        self._pending[message_id] = pending
        if timeout is None:
            timeout = self.reply_timeout
        if timeout == math.inf:
            return
        pending.timeout = timeout
        pending.deadline = backend.clock() + timeout
        if self._timers.push(pending) and pending.deadline < self._timer_deadline:
            wake = self._timer_wake
            if wake is not None and not wake.done():  # done: cancelled by the timer's deadline
                self._timer_wake = None
                wake.set_result(None)

    def _enqueue(self, message: Message) -> None:
        self._queue.append(message)
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():  # done: cancelled with an enclosing cancel scope (asyncio)
                wake.set_result(None)

    # ------------------------------------------------------------------ workers

    async def _worker(self, lead: bool) -> None:
        """A worker: leads the queue, or is captured by a suspended handler, or idles."""
        while True:
            if not lead:
                if len(self._idle) >= _MAX_IDLE_WORKERS:
                    return
                parked = self._backend.new_future()  # type: ignore[union-attr]
                self._idle.append(parked)
                await parked
            captured = await self._lead()
            # A handler suspended: this worker stays with it; another leads meanwhile.
            coro, yielded, message = captured
            try:
                result = await resume(coro, yielded)
            except Exception as exc:
                self._failed(message, exc)
            else:
                self._settle(message, result)
            lead = False

    async def _lead(self) -> tuple[Any, Any, Message]:
        queue = self._queue
        process = self._process
        backend = self._backend
        assert backend is not None
        while True:
            batch = _LEADER_BATCH
            while queue and batch:
                batch -= 1
                captured = process(queue.popleft())
                if captured is not None:
                    self._hand_off()
                    return captured
            if queue:
                await anyio.lowlevel.checkpoint()
                continue
            wake = self._wake = backend.new_future()
            drained = self._drained
            if drained is not None:
                self._drained = None
                if not drained.done():
                    drained.set_result(None)
            await wake

    def _hand_off(self) -> None:
        while self._idle:
            parked = self._idle.pop()
            if not parked.done():  # done: cancelled with an enclosing cancel scope (asyncio)
                parked.set_result(None)
                return
        assert self._task_group is not None
        self._task_group.start_soon(self._worker, True, name="dispatchio worker")

    def _process(self, message: Message) -> tuple[Any, Any, Message] | None:
        """Start handling one queued message. Returns the handler if it suspended."""
        dest = message.destination
        if dest is None:
            self._fan_out(message)
            return None
        held = self._held_dest
        if held and dest in held:
            held[dest].append(message)
            return None
        listener: Any = self._listeners.get(dest)
        if listener is None:
            self._vanished(message)
            return None
        if message.blocking and message.group is None and not message.is_response:
            message._hold = _Hold(dest, False, 1)
            held[dest] = collections.deque()
        if self._observed:
            self._notify_delivered(message, listener)
        coro: Any = None
        try:
            while True:
                if type(listener).handle_message is _BASIC_HANDLE:
                    rule = listener.match(message)
                    if rule is None:
                        listener.unmatched_count += 1
                        result = UNHANDLED
                        break
                    action = rule.action
                    if action is Action.CALLBACK:
                        result = rule.target(message)
                        if result.__class__ is _CoroutineType:
                            coro = result
                        break
                    if action is Action.QUEUE:
                        rule.put(message)
                        result = DEFERRED
                        break
                    if action is Action.LISTENER:
                        listener = rule.target
                        continue
                    coro = rule.target(message)
                else:
                    coro = listener.handle_message(message)
                break
            if coro is not None:
                try:
                    yielded = coro.send(None)
                except StopIteration as stop:
                    result = stop.value
                else:
                    return coro, yielded, message
        except Exception as exc:
            self._failed(message, exc)
            return None
        self._settle(message, result)
        return None

    def _fan_out(self, message: Message) -> None:
        """Turn a group message into one copy per subscriber, queued in its place."""
        group = message.group
        assert group is not None
        held = self._held_group
        if held and group in held:
            held[group].append(message)
            return
        members = self._members.get(group)
        if message.process != self.process_id and self._mesh is not None:
            # Tell the sender how many replies to expect from here, before any copy runs.
            self._mesh.fanned_out(message, len(members or ()))
            if not members:
                return
        if not members:
            self._vanished(message)
            return
        pending = self._pending.get(message.id) if message.response_required else None  # type: ignore[arg-type]
        if pending is not None and pending.message is message:
            pending.outstanding += len(members)
        hold = None
        if message.blocking:
            hold = _Hold(group, True, len(members))
            held[group] = collections.deque()
        copies = []
        for lid, _ in members:
            copy = Message(
                message.type,
                message.content,
                id=message.id,
                source=message.source,
                destination=lid,
                group=group,
                process=message.process,
                response_required=message.response_required,
                blocking=message.blocking,
            )
            if hold is not None:
                copy._hold = hold
            copies.append(copy)
        copies.reverse()
        self._queue.extendleft(copies)

    # ------------------------------------------------------------------ outcomes

    def _settle(self, message: Message, result: Any) -> None:
        """Act on what a handler returned (or what `reply` was given)."""
        if result is DEFERRED:
            return
        if getattr(message, "_hold", None) is not None:
            self._release(message)
        if result is UNHANDLED:
            listener = self._listeners.get(message.destination)  # type: ignore[arg-type]
            self._unmatched(message, listener)
            if message.response_required and not message.is_response:
                declined = _declined(message)
                self._respond(message, message.content, format_error(declined.code, str(declined)))
            return
        if message.is_response or (result is None and not message.response_required):
            return
        self._respond(message, result, None)

    def _failed(self, message: Message, exc: Exception, *, respond: bool = True) -> None:
        self.stats.handler_errors += 1
        listener = self._listeners.get(message.destination)  # type: ignore[arg-type]
        logger.error(
            "handler of listener %r raised on %r", message.destination, message, exc_info=exc
        )
        if self._observed:
            self._notify("dispatchio_handler_failed", message=message, listener=listener, error=exc)
        if getattr(message, "_hold", None) is not None:
            self._release(message)
        if respond and message.response_required and not message.is_response:
            error = format_error(HandlerError.code, f"{type(exc).__name__}: {exc}")
            self._respond(message, None, error, cause=exc)

    def _respond(
        self,
        message: Message,
        content: Any,
        error: str | None,
        cause: BaseException | None = None,
    ) -> None:
        response = Message(
            message.type,
            content,
            id=message.id,
            source=message.destination,
            destination=message.source,
            process=self.process_id,
            is_response=True,
            error=error,
        )
        origin = message.process
        if origin != self.process_id and self._mesh is not None and origin is not None:
            self._mesh.respond(response, origin)
            return
        self._route_response(response, cause)

    def _route_response(self, response: Message, cause: BaseException | None = None) -> None:
        """Take a response to the sender that waits for it, or to its source listener."""
        pending = self._pending.get(response.id)  # type: ignore[arg-type]
        if pending is None:
            if response.id in self._expired:
                self.stats.late_replies += 1
            else:
                self._to_source(response)
            return
        kind = pending.kind
        pending.outstanding -= 1
        if response.error is None:
            pending.answered += 1
            if kind == REQUEST:
                self._finish(pending)
                self._resolve(pending, response)
                return
            if kind == GATHER:
                pending.replies.append(response)
            else:
                self._to_source(response)
        elif is_decline(response):
            pending.declines += 1  # matters only if nobody takes the message at all
        else:
            if pending.first_error is None:
                pending.first_error = response
                pending.first_cause = cause
            if kind == GATHER:
                pending.replies.append(response)
            elif kind == LETTER:
                self._deliver_letter(response)
        if pending.outstanding > 0:
            return
        # Every recipient has answered, declined or failed.
        self._finish(pending)
        if kind == GATHER:
            self._resolve(pending, pending.replies)
        elif kind == REQUEST:
            if pending.first_error is not None:
                self._fail(pending, pending.first_error, pending.first_cause)
            else:
                self._fail(pending, response, cause)
        elif not pending.answered and pending.first_error is None:
            self._deliver_letter(response)  # a letter every recipient declined

    def _to_source(self, response: Message) -> None:
        if response.destination in self._listeners:
            self._enqueue(response)
        else:
            self.stats.dropped_replies += 1

    def _finish(self, pending: Pending) -> None:
        """Stop waiting: forget the pending entry and kill its timer."""
        if not pending.live:
            return
        pending.live = False
        message_id = pending.message.id
        assert message_id is not None
        if self._pending.get(message_id) is pending:
            del self._pending[message_id]
        if pending.deadline:
            self._timers.discard(pending)
        if pending.kind != LETTER or pending.outstanding > 0:
            # Whoever still answers (another subscriber, a second reply()) is late.
            self._expired.add(message_id)

    @staticmethod
    def _resolve(pending: Pending, value: Any) -> None:
        future = pending.future
        if future is not None and not future.done():
            future.set_result(value)

    @staticmethod
    def _fail(pending: Pending, response: Message, cause: BaseException | None) -> None:
        future = pending.future
        if future is not None and not future.done():
            error = error_from_message(response)
            assert error is not None
            if cause is not None:
                error.__cause__ = cause
            future.set_exception(error)

    def _deliver_letter(self, letter: Message) -> None:
        """Return a failure to the source listener of a ``send`` (returned to sender)."""
        self.stats.returned += 1
        if self._observed:
            self._notify("dispatchio_message_returned", message=letter)
        self._to_source(letter)

    def _return_letter(self, message: Message, error: DispatchError) -> None:
        """Return an undeliverable ``send`` to its source listener, content and all."""
        self._deliver_letter(
            Message(
                message.type,
                message.content,
                id=message.id,
                destination=message.source,
                process=self.process_id,
                is_response=True,
                error=format_error(UndeliverableError.code, str(error)),
            )
        )

    def _vanished(self, message: Message) -> None:
        """A queued message whose destination (or whole group) went away before delivery."""
        if message.is_response:
            self.stats.dropped_replies += 1
            return
        if getattr(message, "_hold", None) is not None:
            self._release(message)
        error = self._nobody(message)
        remote_origin = message.process != self.process_id and self._mesh is not None
        if remote_origin or (message.response_required and message.id in self._pending):
            self._respond(
                message, message.content, format_error(UndeliverableError.code, str(error))
            )
        else:
            self._return_letter(message, error)

    def _release(self, message: Message) -> None:
        """A blocking message was handled: let the messages held behind it go."""
        hold: _Hold = message._hold  # type: ignore[assignment]
        message._hold = None
        hold.remaining -= 1
        if hold.remaining > 0:
            return
        held = (self._held_group if hold.is_group else self._held_dest).pop(hold.key, None)
        if held:
            self._queue.extendleft(reversed(held))
            wake = self._wake
            if wake is not None:
                self._wake = None
                if not wake.done():
                    wake.set_result(None)

    # ------------------------------------------------------------------ timers

    async def _run_timers(self) -> None:
        backend = self._backend
        assert backend is not None
        timers = self._timers
        while True:
            deadline = timers.pop_expired(backend.clock(), self._expire)
            self._timer_deadline = math.inf if deadline is None else deadline
            wake = self._timer_wake = backend.new_future()
            if deadline is None:
                await wake
            else:
                with anyio.move_on_after(max(deadline - backend.clock(), 0)):
                    await wake
            self._timer_wake = None

    def _expire(self, pending: Pending) -> None:
        message = pending.message
        self._finish(pending)
        self._expired.add(message.id)  # type: ignore[arg-type]
        if pending.kind == GATHER:
            self._resolve(pending, pending.replies)
            return
        self.stats.timeouts += 1
        if self._observed:
            self._notify("dispatchio_reply_timed_out", message=message)
        error = format_error(
            ReplyTimeoutError.code,
            f"no reply to {message.type!r} from {message.destination or message.group!r}"
            f" within {pending.timeout:g} s",
        )
        response = Message(
            message.type,
            None,
            id=message.id,
            destination=message.source,
            process=self.process_id,
            is_response=True,
            error=error,
        )
        if pending.kind == LETTER:
            self._deliver_letter(response)
        else:
            self._fail(pending, response, None)

    # ------------------------------------------------------------------ observation

    def _unmatched(self, message: Message, listener: MessageListener | None) -> None:
        self.stats.unmatched += 1
        if self._observed:
            self._notify("dispatchio_message_unmatched", message=message, listener=listener)

    def _notify_sent(self, message: Message) -> None:
        self._notify("dispatchio_message_sent", message=message)

    def _notify_delivered(self, message: Message, listener: MessageListener) -> None:
        self._notify("dispatchio_message_delivered", message=message, listener=listener)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        if hook_name not in self._implemented:
            return
        try:
            getattr(self._hook, hook_name)(dispatcher=self, **kwargs)
        except Exception:
            logger.exception("a %s hook implementation raised", hook_name)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"MessageDispatcher(process_id={self.process_id!r}, {state},"
            f" listeners={len(self._listeners)})"
        )


def _declined(message: Message) -> UndeliverableError:
    """The error for a message its destination's rules did not match."""
    return UndeliverableError(
        f"listener {message.destination!r} has no rule for {message.type!r}", message=message
    )


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:  # also refuses NaN, which breaks the timer heap
        raise ValueError(f"a reply timeout must be > 0 seconds (or math.inf), got {timeout!r}")


def iterator_of_ids() -> Iterator[int]:
    """An endless iterator of message IDs unique across processes (64 random bits + counter)."""
    return itertools.count(secrets.randbits(64) << 32)


_default_lock = threading.Lock()
_default: MessageDispatcher | None = None


def get_dispatcher() -> MessageDispatcher:
    """Return the process's default dispatcher, creating it on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MessageDispatcher()
        return _default
