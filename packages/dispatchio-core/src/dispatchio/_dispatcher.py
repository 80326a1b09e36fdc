"""The message dispatcher: the public API, its argument checks, and the wiring of the parts.

`MessageDispatcher` owns what a user calls: registration (kept by `Registry`),
``send_sync``, the lifecycle, ``send`` / ``request`` / ``gather`` / ``reply``, the
routing decision (`MessageDispatcher._route`, the one place that decides "here, there
or nobody") and the ``wait_for_*`` helpers. Handlers run in the `Scheduler`, replies
are counted in `Replies`, events are counted and observed in `Observers`, and other
processes are reached through the `Mesh` (built only when transports are configured).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

import anyio
import anyio.lowlevel

from dispatchio._backend import Backend, current_backend
from dispatchio._errors import (
    DeliveryError,
    DispatcherNotRunningError,
    DispatchError,
    InvalidMessageError,
    OutboxFullError,
    SyncSendError,
    TransportError,
    UndeliverableError,
    format_error,
)
from dispatchio._listener import MessageListener
from dispatchio._message import (
    DEFERRED,
    UNHANDLED,
    ListenerId,
    Message,
    MessageIds,
    response_to,
    stamp,
)
from dispatchio._observers import DispatcherStats, Observers
from dispatchio._plugins import checked_plugin_manager
from dispatchio._registry import Registry
from dispatchio._replies import GATHER, LETTER, REQUEST, Pending
from dispatchio._scheduler import Scheduler, declined, nobody
from dispatchio._wire import encode_message

if TYPE_CHECKING:
    from types import TracebackType

    import pluggy

    from dispatchio._mesh import Mesh
    from dispatchio._thread import DispatcherThread
    from dispatchio.transport import Transport

logger = logging.getLogger("dispatchio")

_INLINE_STREAK: Final = 64  # requests answered inline before a checkpoint
_REMOTE_STREAK: Final = 64  # sends to other processes before a checkpoint
_LOGGED_HANDLERS: Final = 10  # cancelled handlers named in the shutdown warning


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
        plugins: The plugin manager whose hooks observe this dispatcher and provide its
            transports: a `dispatchio.PluginManager`, or a plain
            ``pluggy.PluginManager("dispatchio")`` (the hook specs are added to it).
            Default: the process-wide one from `dispatchio.default_plugin_manager`
            (entry points loaded on first use).
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
        shutdown_grace: Seconds that leaving ``async with`` waits for the messages
            already accepted to be handled and for running handlers to finish; those
            still running then are cancelled, logged and counted in
            ``stats.cancelled_handlers``. ``math.inf`` waits for ever.

    Raises:
        TypeError: an argument of the wrong type, named (``reply_timeout="1"``, a bool
            for a number, a ``process_id`` that is not an int or a str, one URL string
            for ``listen`` or ``connect``, ``plugins`` that is not a
            ``pluggy.PluginManager``).
        ValueError: ``reply_timeout``, ``heartbeat_interval``, ``heartbeat_tolerance`` or
            ``max_message_size`` is not > 0, ``shutdown_grace`` is negative, or
            ``plugins`` belongs to another pluggy project.
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
        shutdown_grace: float = 5.0,
    ) -> None:
        if process_id is None:
            process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        if not (isinstance(process_id, (int, str)) and not isinstance(process_id, bool)):
            raise TypeError(f"process_id must be an int or a str, got {process_id!r}")
        _check_positive("reply_timeout", reply_timeout)
        if isinstance(listen, str) or isinstance(connect, str):
            raise TypeError("listen= and connect= take a list of URLs, not one string")
        _check_positive("heartbeat_interval", heartbeat_interval)
        _check_positive("heartbeat_tolerance", heartbeat_tolerance, integer=True)
        _check_positive("max_message_size", max_message_size, integer=True)
        if shutdown_grace != 0:  # zero is allowed: cancel running handlers at once
            _check_positive("shutdown_grace", shutdown_grace)
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
        self.shutdown_grace = shutdown_grace
        # A random start, then counters: unique across processes without coordination.
        self._ids = MessageIds()
        if plugins is None:
            from dispatchio._plugins import default_plugin_manager

            plugins = default_plugin_manager()
        self.plugins = checked_plugin_manager(plugins)
        self._observers = Observers(plugins, self)
        self.stats: DispatcherStats = self._observers.stats
        self._registry = Registry()
        self._scheduler = Scheduler(process_id, self._registry, self._observers, self._ids)
        self._replies = self._scheduler.replies
        # The parts' tables, shared (never copied) so a hot path reads them in one lookup.
        self._listeners = self._registry.listeners
        self._members = self._registry.members
        self._pending = self._replies.pending
        self._queue = self._scheduler.queue
        self._backend: Backend | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closing = False
        # Set when a local registration changes, for `_wait_until` without a mesh (the
        # mesh has its own); created only while someone waits, so changes cost nothing
        # otherwise.
        self._changed: anyio.Event | None = None
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
        self._observers.refresh()

    def register(self, listener: MessageListener) -> MessageListener:
        """Register a listener under its `MessageListener.id`; return it.

        Raises:
            ValueError: the listener's ID is None (anonymous listeners can only be chained).
            TypeError: not a `MessageListener`, or its ID is not an int or a str.
            DuplicateListenerError: another listener already has that ID.
        """
        return self._registry.register(listener)

    def unregister(self, listener: MessageListener | ListenerId) -> None:
        """Remove a listener (given itself or its ID) and all its group subscriptions.

        Messages already queued for it come back to their senders as undeliverable.

        Raises:
            KeyError: no such listener is registered.
        """
        self._registry.unregister(listener)

    def subscribe(self, group: ListenerId, listener: MessageListener | ListenerId) -> None:
        """Subscribe a registered listener to a group. Subscribing twice is harmless.

        Raises:
            KeyError: the listener is not registered.
        """
        self._registry.subscribe(group, listener)

    def unsubscribe(self, group: ListenerId, listener: MessageListener | ListenerId) -> None:
        """Remove a listener from a group.

        Raises:
            KeyError: the listener is not subscribed to that group.
        """
        self._registry.unsubscribe(group, listener)

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

    def directory(self) -> dict[str, Any]:
        """Describe every process this one knows, with its listeners and groups.

        Returns a plain dict that `json.dumps` accepts (group IDs are values, never object
        keys, so int IDs stay ints)::

            {"process": <this process's ID>,
             "processes": [
                 {"process": <ID>, "local": <True for this process>,
                  "urls": [<URLs it listens on>], "listeners": [<listener IDs>],
                  "groups": [{"group": <group ID>, "members": [<listener IDs>]}]},
                 ...]}

        This process comes first (listeners and members in registration order), then
        each connected peer as this process last heard of it, by ID (ints first). A
        snapshot: later changes do not alter the returned dict.
        """
        registry = self._registry
        local = {
            "process": self.process_id,
            "local": True,
            "urls": list(self.listen_urls),
            "listeners": list(registry.listeners),
            "groups": [
                {"group": group, "members": list(members)}
                for group, members in registry.groups.items()
            ],
        }
        peers = [] if self._mesh is None else self._mesh.peer_entries()
        return {"process": self.process_id, "processes": [local, *peers]}

    async def wait_for_peer(self, process_id: ListenerId, *, timeout: float = 10.0) -> None:
        """Wait until the process ``process_id`` is connected.

        Raises:
            TimeoutError: not within ``timeout`` seconds; the message names the process,
                the ``connect=`` URLs and the processes that are connected.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        await self._wait_until(
            lambda mesh: mesh is not None and process_id in mesh.peers,
            timeout,
            f"process {process_id!r} did not connect",
        )

    async def wait_for_listener(self, listener_id: ListenerId, *, timeout: float = 10.0) -> None:
        """Wait until some process (this one included) has a listener ``listener_id``.

        Raises:
            TimeoutError: not within ``timeout`` seconds; the message names the listener,
                the ``connect=`` URLs, the processes that are connected and the listeners
                they have.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        await self._wait_until(
            lambda mesh: (
                listener_id in self._listeners
                or (mesh is not None and listener_id in mesh.remote_listener)
            ),
            timeout,
            f"no process has a listener {listener_id!r}",
            listeners=True,
        )

    async def wait_for_subscribers(
        self, group: ListenerId, count: int, *, timeout: float = 10.0
    ) -> None:
        """Wait until ``group`` has at least ``count`` subscribers across all processes.

        Raises:
            TimeoutError: not within ``timeout`` seconds; the message names the group, the
                ``connect=`` URLs and the processes that are connected.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
        """
        groups = self._registry.groups

        def subscribers(mesh: Mesh | None) -> int:
            here = len(groups.get(group, ()))
            return here + (0 if mesh is None else mesh.remote_subscriber_count(group))

        await self._wait_until(
            lambda mesh: subscribers(mesh) >= count,
            timeout,
            f"group {group!r} did not reach {count} subscriber(s)",
            progress=lambda: f" (it has {subscribers(self._mesh)})",
        )

    async def _wait_until(
        self,
        condition: Callable[[Mesh | None], bool],
        timeout: float,
        what: str,
        *,
        listeners: bool = False,
        progress: Callable[[], str] = str,
    ) -> None:
        self._require_running()
        try:
            with anyio.fail_after(timeout):
                while not condition(self._mesh):
                    if self._mesh is not None:
                        await self._mesh.changed.wait()
                        continue
                    changed = self._changed
                    if changed is None:
                        changed = self._changed = anyio.Event()
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{what}{progress()} within {timeout:g} s; {self._whereabouts(listeners)}"
            ) from None

    def _whereabouts(self, listeners: bool) -> str:
        """What this dispatcher can see of other processes, for a timeout's message: the
        ``connect=`` URLs with the last error dialing each (as its transport reported it
        through `TransportHandler.dial_failed`), the connected processes and, for
        ``wait_for_listener``, their listeners."""
        mesh = self._mesh
        if mesh is None:
            return (
                "this dispatcher has no transport (no listen=, connect= or transports=),"
                " so only its own listeners count"
            )
        errors = mesh.dial_errors
        tried = ", ".join(
            f"{url} (last error: {errors[url]})" if url in errors else url for url in mesh.connect
        )
        peers = ", ".join(sorted(map(repr, mesh.peers))) or "none"
        text = f"connect= URLs: {tried or 'none'}; connected processes: {peers}"
        others = [f"{url} ({error})" for url, error in errors.items() if url not in mesh.connect]
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            text += f"; other URLs that failed to dial: {shown}"
        if listeners and mesh.peers:
            known = sorted(map(repr, mesh.remote_listener))
            shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            text += f"; listeners in other processes: {shown or 'none'}"
        if mesh.connect and not mesh.peers and not errors:
            text += " (no attempt to connect has failed yet: is the URL right?)"
        return text

    def debug_counts(self) -> dict[str, int]:
        """Sizes of this dispatcher's internal tables, for tests and leak hunts (a copy).

        ``pending``: messages waiting for replies; ``timers``: their live deadlines;
        ``timer_entries``: entries in the deadline heap, finished ones included (at most
        about twice ``timers``); ``expired_ids``: IDs of finished waits remembered so
        late replies are counted and dropped (at most 65,536, oldest forgotten first);
        ``queued``: messages accepted and not yet started; ``awaiting_remote``: replies
        other processes are still counted as owing; ``remote_listeners``: listener IDs
        known in other processes.
        """
        replies, mesh = self._replies, self._mesh
        return {
            "pending": len(replies.pending),
            "timers": len(replies.timers),
            "timer_entries": replies.timers.entries,
            "expired_ids": len(replies.expired),
            "queued": len(self._queue),
            "awaiting_remote": sum(len(p.owed) for p in replies.pending.values() if p.owed),
            "remote_listeners": 0 if mesh is None else len(mesh.remote_listener),
        }

    def _local_changed(self, op: str, lid: ListenerId, group: ListenerId | None) -> None:
        """The registry's change callback while running without a mesh: wake waiters."""
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

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
            InvalidMessageError: a field is invalid, or the message has neither a
                destination nor a group.
            UndeliverableError: no such destination, an empty group, or the destination
                declined the message.
            SyncSendError: the handler is an async callback, or lives in another process.
            Exception: whatever the handler raised, unchanged.
        """
        stamp(message, self._ids, self.process_id)
        observers = self._observers
        if observers.observed:
            observers.sent(message)
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
                raise _unaddressed(message)
            if observers.observed:
                observers.delivered(message, listener)
            result = listener.handle_message_sync(message)
            if result is UNHANDLED:
                observers.unmatched(message, listener)
                raise declined(message)
            return result
        if self._mesh is not None and group in self._mesh.remote_groups:
            raise SyncSendError(
                f"group {group!r} has subscribers in other processes; send_sync reaches only"
                " this process (use send() or gather())"
            )
        members = self._members.get(group)
        if not members:
            raise nobody(message)
        # results.append, not a cached bound method: 3.11 specialises the method call.
        results: list[Any] = []
        observed = observers.observed
        for _, listener in members:
            if observed:
                observers.delivered(message, listener)
            result = listener.handle_message_sync(message)
            if result is UNHANDLED:
                observers.unmatched(message, listener)
            else:
                results.append(result)
        return results

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> MessageDispatcher:
        """Start the asynchronous machinery (and the transports, listening and dialing).

        Raises:
            DispatchError: the dispatcher is already running, or no asyncio or trio
                event loop runs in this thread.
            TransportConfigError: a URL names no installed transport, or its options are
                wrong.
            TransportError: a transport cannot bind a ``listen`` address (the contract
                of `Transport.serve`). Nothing is left running when starting fails.
        """
        if self._backend is not None:
            raise DispatchError("this dispatcher is already running")
        self.refresh_hooks()
        backend = current_backend()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._backend = backend
        self._task_group = task_group
        self._closing = False
        task_group.start_soon(self._replies.run_timers, backend, name="dispatchio timers")
        self._scheduler.start(backend, task_group)
        self._registry.on_change = self._local_changed
        if self._mesh_config is not None:
            from dispatchio._mesh import Mesh

            mesh = self._mesh = Mesh(
                self.process_id,
                self._registry,
                self._replies,
                self._scheduler.deliver_incoming,
                stats=self.stats,
                plugins=self.plugins,
                dispatcher=self,
                **self._mesh_config,
            )
            self._scheduler.mesh = mesh
            self._registry.on_change = mesh.local_changed
            try:
                await mesh.start(task_group)
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
        """Stop: deliver what was accepted, say goodbye to peers, cancel the workers.

        Leaving normally first drains, for at most ``shutdown_grace`` seconds: queued
        messages are delivered and running handlers (those mid-await included) may
        finish, and whatever they send meanwhile is delivered too; sends and replies
        still work. Leaving with an exception skips the drain. Then the transports close
        (each flushes what it holds, bounded by its ``close_timeout``), every sender
        still waiting for a reply (`request`, `gather`) gets `DispatchError`, letters
        still awaiting a reply are forgotten, messages never started are counted in
        ``stats.discarded``, handlers still running are cancelled and counted in
        ``stats.cancelled_handlers`` (both logged as warnings), and the remaining tasks
        end. The caller's exception, if any, propagates unchanged.
        """
        task_group = self._task_group
        assert task_group is not None
        try:
            if exc_type is None:
                await self._scheduler.drain(self.shutdown_grace)
            if self._mesh is not None:
                await self._mesh.stop()
        finally:
            self._mesh = self._scheduler.mesh = self._registry.on_change = None
            self._closing = True
            # Nothing may wake a worker that is about to be cancelled.
            discarded, running = self._scheduler.close()
            self._replies.close()
            if discarded:
                self.stats.discarded += discarded
                logger.warning("dispatcher closed with %d message(s) never delivered", discarded)
            if running:
                self.stats.cancelled_handlers += len(running)
                when = (
                    f"after the {self.shutdown_grace:g} s shutdown grace"
                    if exc_type is None
                    else "at once (the async with body raised)"
                )
                logger.warning(
                    "dispatcher closed: cancelled %d running handler(s) %s: %s",
                    len(running),
                    when,
                    ", ".join(
                        f"{m.type!r} for {m.destination!r}" for m in running[:_LOGGED_HANDLERS]
                    )
                    + (", ..." if len(running) > _LOGGED_HANDLERS else ""),
                )
            task_group.cancel_scope.cancel()
            try:
                # The caller's exception is not the task group's business: it propagates
                # as it is, never wrapped in an exception group.
                await task_group.__aexit__(None, None, None)
            finally:
                self._backend = None
                self._task_group = None
                # A handler that swallowed its cancellation may have queued more.
                self._scheduler.stopped()
        return None

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
            raise self._not_running()
        return backend

    @staticmethod
    def _not_running() -> DispatcherNotRunningError:
        return DispatcherNotRunningError(
            "the dispatcher is not running: use `async with dispatcher:` (or"
            " dispatcher.in_thread()) before send(), request(), gather() or reply()"
        )

    # ------------------------------------------------------------------ asynchronous sends

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

    def _unsent(self, message: Message, pending: Pending | None, exc: Exception) -> NoReturn:
        """A message to one destination in another process could not go: end its wait
        (``pending``, if any) and raise what the sender is told.

        Raises:
            OutboxFullError: ``exc`` itself, the link is full.
            UndeliverableError: from ``exc``, a `TransportError`: the link is gone.
        """
        if pending is not None and pending.live:
            self._replies.finish(pending)
        if isinstance(exc, OutboxFullError):
            raise exc
        raise UndeliverableError(str(exc), message=message) from exc

    def _transmit(
        self,
        message: Message,
        frame: bytes,
        remote: tuple[ListenerId, ...],
        pending: Pending | None,
    ) -> None:
        """Send an outgoing message to other processes (after its wait, ``pending``, if
        any, is set up). `send` writes the single-destination case out itself.

        Raises:
            OutboxFullError, UndeliverableError: for a message to one destination (see
                `_unsent`); for a group, a copy that cannot go counts as that process's
                failed answer (``outbox_full`` or ``undeliverable``) instead.
        """
        mesh = self._mesh
        assert mesh is not None
        if message.group is None:
            try:
                mesh.forward(remote[0], frame, message, pending)
            except (OutboxFullError, TransportError) as exc:
                self._unsent(message, pending, exc)
            return
        for process in remote:
            try:
                mesh.forward(process, frame, message, pending)
            except (OutboxFullError, TransportError) as exc:
                if pending is not None and pending.live:
                    full = isinstance(exc, OutboxFullError)
                    code = OutboxFullError.code if full else UndeliverableError.code
                    self._replies.route_response(
                        response_to(message, None, None, process, format_error(code, str(exc)))
                    )

    async def send(self, message: Message, *, reply_timeout: float | None = None) -> None:
        """Send a message and return as soon as it is accepted (never waits for the handler).

        The handler's reply, if any, comes back to the listener named by
        ``message.source`` as a response message (``is_response=True``, same ``id``).
        Failures come back the same way, letter style, with ``error`` set:

        * nobody can receive it: ``undeliverable``, with the original content, at once;
        * ``response_required=True`` and no reply within ``reply_timeout`` (default: the
          dispatcher's): ``timeout``;
        * the handler raised and ``response_required=True``: ``handler_error``;
        * ``response_required=True`` and the receiving process died first:
          ``peer_lost``;
        * a group copy could not go to one of the processes (its link is full:
          ``outbox_full``; its link is gone: ``undeliverable``).

        Args:
            message: The message; ``id`` and ``process`` are assigned when None.
            reply_timeout: Seconds to wait for a reply when ``response_required`` is set.

        Raises:
            InvalidMessageError: a field is invalid, the message has neither a destination
                nor a group, or (for another process) its content is not JSON data.
            MessageTooLargeError: it goes to another process and its encoded size exceeds
                ``max_message_size``.
            UndeliverableError: nobody can receive it and there is no registered source
                listener to return it to; or its destination is in another process and
                the link to it is gone.
            OutboxFullError: its destination is in another process and the link to it
                holds too much unsent data (back off and retry).
            DispatcherNotRunningError: outside ``async with dispatcher:``.
            DispatchError: ``response_required`` is set and the message's ``id`` is already
                awaiting replies.
            ValueError: ``reply_timeout`` is not > 0 (``math.inf`` waits forever).
            TypeError: ``reply_timeout`` is not a number.
        """
        # Written out rather than in helpers (here and in `_submit`): a call layer less
        # per message on the hot path.
        backend = self._backend
        if backend is None or self._closing:
            raise self._not_running()
        if reply_timeout is not None:
            _check_timeout(reply_timeout, "reply_timeout")
        stamp(message, self._ids, self.process_id)
        if self._observers.observed:
            self._observers.sent(message)
        local, remote = self._route(message)
        if not local and not remote:
            error = _unaddressed(message)
            if message.source not in self._listeners or not isinstance(error, DeliveryError):
                raise error
            self._replies.return_letter(message, error)
            return
        mesh = self._mesh
        # Encoded (and its size checked) before anything is queued or awaited.
        frame = encode_message(message, mesh.max_message_size) if remote else b""  # type: ignore[union-attr]
        pending: Pending | None = None
        if message.response_required:
            if message.id in self._pending:
                raise DispatchError(f"message id {message.id!r} is already awaiting replies")
            pending = Pending(LETTER, message, None)
            pending.outstanding = 1 if message.group is None else len(remote)
            self._replies.wait_for(
                pending, backend, self.reply_timeout if reply_timeout is None else reply_timeout
            )
        if local:
            self._scheduler.enqueue(message)
        if remote:
            if message.group is None:
                # `_transmit`'s first case, written out: a call layer less per message.
                try:
                    mesh.forward(remote[0], frame, message, pending)  # type: ignore[union-attr]
                except (OutboxFullError, TransportError) as exc:
                    self._unsent(message, pending, exc)
            else:
                self._transmit(message, frame, remote, pending)
            self._remote_streak += 1
        if self._remote_streak >= _REMOTE_STREAK or (local and len(self._queue) > self._high_water):
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
                subscriber, for a group) declined it, or the link to the receiving
                process is gone.
            ReplyTimeoutError: no reply in time. A reply arriving later is dropped and
                counted in ``stats.late_replies``.
            HandlerError: the handler raised (every subscriber's, for a group).
            PeerLostError: the receiving process died (or went silent past the heartbeat
                bound) before answering.
            OutboxFullError: the link to the receiving process holds too much unsent data
                (for a group: only if no other subscriber answers).
            InvalidMessageError: a field is invalid, the message has neither a destination
                nor a group, or (for another process) its content is not JSON data.
            MessageTooLargeError: it goes to another process and its encoded size exceeds
                ``max_message_size``.
            DispatcherNotRunningError: outside ``async with dispatcher:``.
            DispatchError: the message's ``id`` is already awaiting replies, or the
                dispatcher closed first.
            ValueError: ``timeout`` is not > 0 (``math.inf`` waits forever).
            TypeError: ``timeout`` is not a number.

        Cancelling the caller stops the wait; a reply arriving afterwards is dropped.
        """
        waiting = self._submit(REQUEST, message, timeout)
        if isinstance(waiting, Message):
            if self._inline_streak >= _INLINE_STREAK:
                # Answers computed inline never suspend; let other tasks run now and then.
                self._inline_streak = 0
                await anyio.lowlevel.checkpoint()
            return waiting
        # Awaited here, not in a helper coroutine: one frame less on every resumption.
        future = waiting.future
        assert future is not None
        try:
            return await future  # type: ignore[no-any-return]
        finally:
            if waiting.live:  # cancelled while waiting
                self._replies.abandon(waiting)
            # A raised error's traceback holds this frame, whose locals hold the future
            # holding the error: without this, every timed-out request is a cycle that
            # only the full garbage collection frees.
            del future, waiting

    async def gather(self, message: Message, *, timeout: float | None = None) -> list[Message]:
        """Send a message (usually to a group) and return every reply that arrives in time.

        Returns as soon as every subscriber has answered, or at the timeout with the
        replies so far. Subscribers that decline the message are not waited for; a
        subscriber whose handler raised contributes a response with ``error`` set.

        A subscriber in a process that died before answering contributes a response
        with a ``peer_lost`` error; one behind a full link, an ``outbox_full`` one.

        Raises:
            UndeliverableError: at once when nobody can receive it; or, for a single
                destination in another process, when the link to it is gone.
            OutboxFullError: for a single destination in another process, its link holds
                too much unsent data.
            InvalidMessageError, MessageTooLargeError, DispatcherNotRunningError,
                DispatchError, ValueError, TypeError: as `request`.
        """
        waiting = self._submit(GATHER, message, timeout)
        assert isinstance(waiting, Pending)
        assert waiting.future is not None
        try:
            return await waiting.future  # type: ignore[no-any-return]
        finally:
            if waiting.live:  # cancelled while waiting
                self._replies.abandon(waiting)
            del waiting  # no cycle through a raised error's traceback (see request)

    def _submit(self, kind: int, message: Message, timeout: float | None) -> Message | Pending:
        """Send a message whose sender waits: return its answer if computed inline, or
        the `Pending` entry whose future the caller awaits."""
        backend = self._backend
        if backend is None or self._closing:
            raise self._not_running()
        if timeout is not None:
            _check_timeout(timeout, "timeout")
        message.response_required = True
        stamp(message, self._ids, self.process_id)
        if self._observers.observed:
            self._observers.sent(message)
        local, remote = self._route(message)
        if not local and not remote:
            raise _unaddressed(message)
        mesh = self._mesh
        frame = encode_message(message, mesh.max_message_size) if remote else b""  # type: ignore[union-attr]
        message_id = message.id
        assert message_id is not None
        if message_id in self._pending:
            raise DispatchError(f"message id {message_id!r} is already awaiting replies")
        answer: Any = None
        scheduler = self._scheduler
        if kind == REQUEST and local and scheduler.wake is not None and not self._queue:
            answer = scheduler.answer_inline(message)
            if answer.__class__ is Message:
                self._inline_streak += 1
                return answer
        pending = Pending(kind, message, backend.new_future())
        pending.outstanding = 1 if message.group is None else len(remote)
        self._replies.wait_for(pending, backend, self.reply_timeout if timeout is None else timeout)
        if local and answer is not DEFERRED:
            scheduler.enqueue(message)
        if remote:
            self._transmit(message, frame, remote, pending)
        return pending

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
        self._scheduler.settle(message, content)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"MessageDispatcher(process_id={self.process_id!r}, {state},"
            f" listeners={len(self._listeners)})"
        )


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    """Refuse a constructor argument that is not a positive number, naming it.

    Raises:
        TypeError: not an int (or, unless ``integer``, a float); bools are refused too.
        ValueError: not > 0 (NaN included).
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integer else "a number (int or float)"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if not value > 0:  # type: ignore[operator]  # also refuses NaN
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_timeout(timeout: float, name: str) -> None:
    """Refuse a timeout given (not None) that is not a number > 0."""
    try:
        positive = timeout > 0
    except TypeError:  # comparing costs nothing more here than testing the type first
        raise TypeError(
            f"{name} must be a number of seconds (int or float), got {timeout!r}"
        ) from None
    if not positive:  # also refuses NaN, which breaks the timer heap
        raise ValueError(f"{name} must be > 0 seconds (or math.inf), got {timeout!r}")


def _unaddressed(message: Message) -> DispatchError:
    """The error for an outgoing message nobody can take: it may have no address at all."""
    if message.destination is None and message.group is None:
        return InvalidMessageError(
            f"Message({message.type!r}) has neither a destination nor a group: set"
            " destination= (a listener ID) or group= (a group ID)"
        )
    return nobody(message)


_default_lock = threading.Lock()
_default: MessageDispatcher | None = None


def get_dispatcher() -> MessageDispatcher:
    """Return the process's default dispatcher, creating it on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MessageDispatcher()
        return _default
