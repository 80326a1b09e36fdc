"""`FaultProxy`: a loopback TCP proxy that injects network faults while traffic flows.

A test puts the proxy between two processes (or between a process and a broker) by
giving one side the proxy's URL instead of the other side's, then changes what the
"network" does at any moment: pass bytes through, delay them (latency and jitter),
limit bandwidth, swallow them while keeping the connections open (a blackhole), reset
every connection, or do any of these to one direction only.

Each accepted connection gets its own connection to the target. Bytes move in chunks
as the sockets give them; every chunk of one direction waits in a delay line until it
is due, so order is kept whatever the jitter, and a full delay line (``buffer_size``
bytes) stops reading, so a slow "link" pushes back on the sender as a real one does.

The proxy works on asyncio and trio and needs nothing but anyio.
"""

from __future__ import annotations

import collections
import math
import random
import socket
import struct
import urllib.parse
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack, suppress
from typing import Literal, get_args

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

__all__ = ["Direction", "FaultProxy"]

#: Which bytes a fault applies to: those the client sends to the target, those the
#: target sends back to the client, or both.
Direction = Literal["both", "to_target", "to_client"]

_DIRECTIONS: tuple[str, ...] = get_args(Direction)
_ONE_WAY = ("to_target", "to_client")
_CHUNK = 65536
# What a broken connection raises on either backend; the proxy then resets both sides.
_LINK_ERRORS = (
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)


class _Policy:
    """What one direction of the "network" does to the bytes it carries."""

    __slots__ = ("blackholed", "delay", "jitter", "rate")

    def __init__(self) -> None:
        self.blackholed = False
        self.delay = 0.0
        self.jitter = 0.0
        self.rate: float | None = None  # bytes per second; None: unlimited

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


class _Line:
    """One direction of one connection: chunks read, waiting until they are due."""

    __slots__ = ("bytes", "changed", "chunks", "last_due")

    def __init__(self) -> None:
        # (due time, data); data None stands for the end of the stream (a FIN).
        self.chunks: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.bytes = 0
        self.last_due = -math.inf
        self.changed = anyio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class _Connection:
    """One client connection and its connection to the target."""

    __slots__ = ("client", "closed", "reset", "scope", "upstream")

    def __init__(self, client: anyio.abc.SocketStream) -> None:
        self.client = client
        self.upstream: anyio.abc.SocketStream | None = None
        self.scope = anyio.CancelScope()
        self.reset = False  # close with RST rather than FIN
        self.closed = anyio.Event()


class FaultProxy:
    """A TCP proxy on loopback whose faults a test switches while traffic flows.

    Use it as ``async with FaultProxy(target) as proxy:`` (or call `aclose` yourself,
    from the task that entered it); point one side at `url` instead of ``target``::

        async with FaultProxy(server_url) as proxy:
            client = MessageDispatcher("client", connect=[proxy.url])
            ...
            proxy.set_latency(0.05, jitter=0.02)   # 50 ms +- 20 ms each way
            proxy.blackhole()                      # silence, connections kept open
            proxy.pass_through()                   # back to normal
            await proxy.reset()                    # RST every connection

    Faults hold until changed and apply to the connections already open as well as to
    new ones. Latency and bandwidth limits combine; a blackhole overrides both. Each
    control method takes ``direction``: ``"to_target"`` (the bytes the connecting side
    sends), ``"to_client"`` (the bytes the target sends back) or ``"both"`` (default),
    so ``proxy.blackhole("to_target")`` cuts one direction only.

    Args:
        target: Where to forward connections: a URL with a host and a port
            (``tcp://127.0.0.1:7400``, ``kafka://127.0.0.1:9092/ns``) or ``host:port``.
        host: The address to listen on (default ``127.0.0.1``).
        port: The port to listen on (default 0: a free one; see `port`).
        buffer_size: Bytes one direction of one connection holds while they wait for
            their due time or for bandwidth; past it the proxy stops reading that side.
        seed: Seed of the random jitter, for a reproducible run.

    Raises:
        ValueError: ``target`` has no host or port, or ``buffer_size`` is below 1.
    """

    def __init__(
        self,
        target: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        buffer_size: int = 1 << 20,
        seed: int | None = None,
    ) -> None:
        self._target = target
        parts = urllib.parse.urlsplit(target if "://" in target else f"//{target}")
        try:
            target_port = parts.port
        except ValueError as exc:
            raise ValueError(f"FaultProxy target {target!r}: {exc}") from None
        if not parts.hostname or target_port is None:
            raise ValueError(f"FaultProxy target {target!r} needs a host and a port")
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size!r}")
        self._parts = parts
        self._target_address = (parts.hostname, target_port)
        self._host = host
        self._listen_port = port
        self._buffer_size = buffer_size
        self._random = random.Random(seed)
        self._policies = {direction: _Policy() for direction in _ONE_WAY}
        self._connections: set[_Connection] = set()
        self._open = 0  # connections with both sides connected
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "accepted",
                "refused",
                "reset",
                "forwarded_to_target",
                "forwarded_to_client",
                "dropped_to_target",
                "dropped_to_client",
                "eof_to_target",
                "eof_to_client",
            ),
            0,
        )
        self._changed: anyio.Event | None = None  # created when somebody waits
        self._healed = anyio.Event()  # set (and replaced) when a policy changes
        self._bound: tuple[str, int] | None = None
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FaultProxy:
        """Bind and start accepting.

        Raises:
            RuntimeError: the proxy was started or closed already.
            OSError: the listening address cannot be bound.
        """
        if self._stack is not None or self._closed:
            raise RuntimeError("a FaultProxy can be started only once")
        stack = AsyncExitStack()
        try:
            listener = await anyio.create_tcp_listener(
                local_host=self._host, local_port=self._listen_port
            )
            stack.push_async_callback(listener.aclose)
            task_group = await stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await stack.aclose()
            raise
        address = listener.listeners[0].extra(SocketAttribute.local_address)
        self._bound = (str(address[0]), int(address[1]))
        self._stack, self._task_group = stack, task_group
        task_group.start_soon(listener.serve, self._handle, task_group)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting and close every connection (without flushing). Idempotent.

        Call it from the task that entered ``async with`` (anyio's cancel scopes belong
        to a task).
        """
        self._closed = True
        stack, self._stack = self._stack, None
        if stack is None or self._task_group is None:
            return
        self._task_group.cancel_scope.cancel()
        await stack.aclose()  # the connections' own cleanup is shielded

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The port the proxy listens on.

        Raises:
            RuntimeError: the proxy is not running (before ``async with`` or after close).
        """
        return self._address()[1]

    @property
    def url(self) -> str:
        """``target`` with its host and port replaced by the proxy's (scheme, path and
        query kept), e.g. ``tcp://127.0.0.1:41234``; ``host:port`` for a bare target.

        Raises:
            RuntimeError: the proxy is not running.
        """
        host, port = self._address()
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if "://" not in self._target:
            return netloc
        return urllib.parse.urlunsplit(self._parts._replace(netloc=netloc))

    def _address(self) -> tuple[str, int]:
        if self._bound is None or self._stack is None:
            raise RuntimeError("the FaultProxy is not running: use it as `async with`")
        return self._bound

    # ------------------------------------------------------------------ faults

    def pass_through(self, direction: Direction = "both") -> None:
        """Carry bytes unchanged again: no latency, no bandwidth limit, no blackhole.

        A FIN held back by a blackhole goes on now. Bytes swallowed meanwhile are gone.

        Raises:
            ValueError: ``direction`` is not one of ``"both"``, ``"to_target"``,
                ``"to_client"``.
        """
        for policy in self._select(direction):
            policy.clear()
        self._policy_changed()

    def set_latency(self, delay: float, jitter: float = 0.0, direction: Direction = "both") -> None:
        """Delay every chunk by ``delay`` seconds, plus or minus up to ``jitter`` (uniform).

        Order is kept: a chunk is never delivered before the one read ahead of it, so a
        chunk drawn early waits for its predecessor. Chunks already waiting keep the due
        time they got.

        Raises:
            ValueError: ``delay`` or ``jitter`` is negative or not finite, ``jitter`` is
                greater than ``delay``, or ``direction`` is unknown.
        """
        if not (0 <= delay < math.inf and 0 <= jitter < math.inf):
            raise ValueError(f"delay and jitter must be finite and >= 0, got {delay!r}, {jitter!r}")
        if jitter > delay:
            raise ValueError(f"jitter ({jitter!r}) must not exceed delay ({delay!r})")
        for policy in self._select(direction):
            policy.delay, policy.jitter = delay, jitter
        self._policy_changed()

    def set_bandwidth(self, bytes_per_second: float | None, direction: Direction = "both") -> None:
        """Limit each connection to ``bytes_per_second`` in ``direction``; None lifts it.

        Raises:
            ValueError: the rate is not a positive finite number, or ``direction`` is
                unknown.
        """
        if bytes_per_second is not None and not 0 < bytes_per_second < math.inf:
            raise ValueError(f"bytes_per_second must be > 0, got {bytes_per_second!r}")
        for policy in self._select(direction):
            policy.rate = bytes_per_second
        self._policy_changed()

    def blackhole(self, direction: Direction = "both") -> None:
        """Swallow every byte from now on, keeping the connections open.

        Chunks still waiting in a delay line are swallowed too; a FIN (one side closing)
        is held back until `pass_through`, as a real network retransmits it. New
        connections are accepted, and their bytes swallowed alike.

        Raises:
            ValueError: ``direction`` is unknown.
        """
        for policy in self._select(direction):
            policy.blackholed = True
        self._policy_changed()

    async def reset(self) -> int:
        """Reset (RST) both sides of every open connection; return how many there were.

        Returns once they are closed. New connections are accepted as before.
        """
        connections = list(self._connections)
        for connection in connections:
            connection.reset = True
            connection.scope.cancel()
        for connection in connections:
            await connection.closed.wait()
        return len(connections)

    def _select(self, direction: str) -> list[_Policy]:
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        if direction == "both":
            return list(self._policies.values())
        return [self._policies[direction]]

    def _policy_changed(self) -> None:
        healed, self._healed = self._healed, anyio.Event()
        healed.set()

    # ------------------------------------------------------------------ figures

    def stats(self) -> dict[str, int]:
        """Counters: connections ``accepted``, ``open`` (connected to the target too, not
        yet closed), ``refused`` (the target was
        unreachable: the client is reset), ``reset`` (by `reset` or a broken side), and
        the bytes ``forwarded_to_target``, ``forwarded_to_client``, ``dropped_to_target``
        and ``dropped_to_client`` (swallowed by a blackhole), and ``eof_to_target`` and
        ``eof_to_client``: ends of stream (FINs) read from one side, for the other."""
        return {**self._counts, "open": self._open}

    async def wait_for(self, condition: Callable[[Mapping[str, int]], bool]) -> None:
        """Return once ``condition(proxy.stats())`` holds, checked whenever a counter moves.

        Bound it with ``anyio.fail_after``: it waits forever otherwise.
        """
        while not condition(self.stats()):
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def _count(self, name: str, amount: int = 1) -> None:
        self._counts[name] += amount
        self._notify()

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    # ------------------------------------------------------------------ connections

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        connection = _Connection(client)
        self._connections.add(connection)
        self._count("accepted")
        try:
            with connection.scope:
                try:
                    connection.upstream = await anyio.connect_tcp(*self._target_address)
                except OSError:
                    self._count("refused")
                    connection.reset = True
                    return
                self._open += 1
                self._notify()
                async with anyio.create_task_group() as task_group:
                    for direction, source, sink in (
                        ("to_target", client, connection.upstream),
                        ("to_client", connection.upstream, client),
                    ):
                        line = _Line()
                        task_group.start_soon(self._read, connection, direction, source, line)
                        task_group.start_soon(self._write, connection, direction, sink, line)
        finally:
            self._connections.discard(connection)
            if connection.upstream is not None:
                self._open -= 1
            if connection.reset:
                self._count("reset")
            with anyio.CancelScope(shield=True):
                for stream in (connection.client, connection.upstream):
                    if stream is not None:
                        await _close(stream, reset=connection.reset)
            connection.closed.set()
            self._notify()  # "open" moved

    async def _read(
        self,
        connection: _Connection,
        direction: str,
        source: anyio.abc.SocketStream,
        line: _Line,
    ) -> None:
        policy = self._policies[direction]
        dropped = f"dropped_{direction}"
        try:
            while True:
                data: bytes | None
                try:
                    data = await source.receive(_CHUNK)
                except anyio.EndOfStream:
                    data = None
                    self._count(f"eof_{direction}")
                if data is not None and policy.blackholed:
                    self._count(dropped, len(data))
                    continue
                now = anyio.current_time()
                delay = policy.delay
                if policy.jitter:
                    delay += self._random.uniform(-policy.jitter, policy.jitter)
                due = max(now + delay, line.last_due)
                line.last_due = due
                line.chunks.append((due, data))
                line.wake()
                if data is None:
                    return
                line.bytes += len(data)
                while line.bytes >= self._buffer_size:
                    await line.changed.wait()
        except _LINK_ERRORS:
            connection.reset = True
            connection.scope.cancel()

    async def _write(
        self,
        connection: _Connection,
        direction: str,
        sink: anyio.abc.SocketStream,
        line: _Line,
    ) -> None:
        policy = self._policies[direction]
        forwarded, dropped = f"forwarded_{direction}", f"dropped_{direction}"
        next_send = -math.inf  # the bandwidth limit's clock
        try:
            while True:
                while not line.chunks:
                    await line.changed.wait()
                due, data = line.chunks[0]
                if due > anyio.current_time():
                    await anyio.sleep_until(due)
                if data is None:
                    while policy.blackholed:  # a FIN waits for the network to heal
                        await self._healed.wait()
                    await sink.send_eof()
                    return
                if policy.blackholed:
                    self._count(dropped, len(data))
                else:
                    view = memoryview(data)
                    while view:
                        rate = policy.rate
                        if rate is None:
                            piece, view = view, view[len(view) :]
                        else:
                            # Slices of at most 20 ms worth of bytes keep the pace even.
                            size = max(1, int(rate * 0.02))
                            piece, view = view[:size], view[size:]
                            now = anyio.current_time()
                            if next_send > now:
                                await anyio.sleep_until(next_send)
                            next_send = max(now, next_send) + len(piece) / rate
                        if _swallows(policy):  # switched while pacing: swallow the rest
                            self._count(dropped, len(piece) + len(view))
                            break
                        await sink.send(bytes(piece))
                        self._count(forwarded, len(piece))
                line.chunks.popleft()
                line.bytes -= len(data)
                line.wake()
        except _LINK_ERRORS:
            connection.reset = True
            connection.scope.cancel()


def _swallows(policy: _Policy) -> bool:
    # A function, so that type checkers do not assume the flag kept across an await.
    return policy.blackholed


async def _close(stream: anyio.abc.SocketStream, *, reset: bool) -> None:
    if reset:
        try:
            raw = stream.extra(SocketAttribute.raw_socket)
            # Linger on with a zero timeout: close() sends RST instead of FIN.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, anyio.TypedAttributeLookupError):
            pass
    with anyio.move_on_after(1), suppress(*_LINK_ERRORS):
        await stream.aclose()
