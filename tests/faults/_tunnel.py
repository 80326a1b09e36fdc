"""`ConnectTunnel`: a minimal HTTP CONNECT proxy on loopback, so that a `FaultProxy` can
sit between one Kafka process and the broker.

A Kafka client bootstraps from the address it is given, then connects to the address
the broker advertises in its metadata, which is the same for every client (tansu has one
``--advertised-listener-url``). A `FaultProxy` given as a process's bootstrap address
would so carry only its first connection. With kafka-python's ``proxy_url`` (the Kafka
transport's ``proxy_url`` option), every connection of that process, to whatever
address, starts with ``CONNECT host:port`` to the proxy instead. The chain is::

    process --proxy_url--> FaultProxy --> ConnectTunnel --> broker (as advertised)

so the fault proxy sees every byte of that process, and of no other: the others reach
the broker directly. Only loopback destinations are tunnelled.
"""

from __future__ import annotations

import ipaddress
from contextlib import AsyncExitStack, suppress

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

#: Largest request head (request line and headers) read before refusing.
MAX_HEAD = 8192
#: Seconds a client has to send its request head.
HEAD_TIMEOUT = 10.0
_LINK_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class ConnectTunnel:
    """``async with ConnectTunnel() as tunnel:`` serves CONNECT on ``tunnel.url``
    (``http://127.0.0.1:<port>``) until exit; ``tunnels`` counts the tunnels opened."""

    def __init__(self) -> None:
        self.tunnels = 0
        self.refused = 0
        self._port: int | None = None
        self._stack: AsyncExitStack | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the tunnel is not running: use it as `async with`")
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> ConnectTunnel:
        stack = AsyncExitStack()
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        stack.push_async_callback(listener.aclose)
        task_group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(task_group.cancel_scope.cancel)
        self._port = int(listener.extra(SocketAttribute.local_port))
        self._stack = stack
        task_group.start_soon(listener.serve, self._handle, task_group)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            reader = BufferedByteReceiveStream(client)
            try:
                with anyio.fail_after(HEAD_TIMEOUT):
                    head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
            except (TimeoutError, anyio.IncompleteRead, anyio.DelimiterNotFound, *_LINK_ERRORS):
                return
            address = _destination(head)
            if address is None:
                self.refused += 1
                with suppress(*_LINK_ERRORS):
                    await client.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            try:
                upstream = await anyio.connect_tcp(*address)
            except OSError:
                self.refused += 1
                with suppress(*_LINK_ERRORS):
                    await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            async with upstream:
                self.tunnels += 1
                try:
                    await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    early = reader.buffer  # bytes the client sent after its head
                    if early:
                        await upstream.send(bytes(early))
                except _LINK_ERRORS:
                    return
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(_pipe, client, upstream, task_group.cancel_scope)
                    task_group.start_soon(_pipe, upstream, client, task_group.cancel_scope)


def _destination(head: bytes) -> tuple[str, int] | None:
    """The loopback ``(host, port)`` of a ``CONNECT host:port HTTP/1.x`` head, else None."""
    method, _, rest = head.partition(b"\r\n")[0].decode("latin-1").partition(" ")
    target, _, version = rest.partition(" ")
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if method != "CONNECT" or not sep or not port.isdigit() or not version.startswith("HTTP/1."):
        return None
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None
    return host, int(port)


async def _pipe(
    source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, scope: anyio.CancelScope
) -> None:
    """Copy ``source`` to ``sink``; pass on its end of stream; end both on an error."""
    try:
        while True:
            try:
                data = await source.receive(65536)
            except anyio.EndOfStream:
                await sink.send_eof()
                return
            await sink.send(data)
    except _LINK_ERRORS:
        scope.cancel()
