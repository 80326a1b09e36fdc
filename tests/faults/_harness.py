"""The parent's side of the fault tests: node processes, transports, resident memory.

`Nodes` starts ``_node.py`` processes (real OS processes, real loopback sockets) inside a
task group and kills every one still alive on exit. `TransportCase` says how a test
reaches a transport: the fault tests run once per case in `CASES`; `fault_link` puts a
`FaultProxy` on one process's path, whatever the transport.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from dispatchio.testing import FaultProxy
from tests.faults._tunnel import ConnectTunnel

NODE = Path(__file__).with_name("_node.py")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class TransportCase:
    """How the fault tests use one transport.

    ``listen`` is the URL a listening process binds. In a proxied pair the test process
    listens and the node dials it only through a `FaultProxy` whose target is the
    test process's first bound URL; ``dialer_listen`` is what the dialing node listens
    on (nothing for TCP, so no link can go around the proxy).

    Adding a transport: one entry in `CASES` (and its package in the noxfile's
    ``SUITES["faults"]``). HTTP (one WebSocket per pair, like TCP) runs every test
    with the entry below; Kafka puts the proxy between the dialing process and the
    broker, with ``listen`` a fresh ``kafka://`` namespace (see `fault_link`).
    """

    name: str
    listen: str
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    dialer_listen: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("asyncio", "trio")
    """The anyio backends the transport runs on (HTTP: asyncio only, as aiohttp)."""
    broker: bool = False
    """The processes meet through a broker, never directly (Kafka). ``listen`` is then a
    template, ``{broker}`` and ``{namespace}`` filled in per test (the ``transport``
    fixture starts the broker); a proxied process reaches the broker through the proxy;
    a process the others find silent is dormant, its letters kept in its inbox for its
    return, and a process that restarts reads again what it had not committed."""


CASES: dict[str, TransportCase] = {
    "tcp": TransportCase("tcp", "tcp://127.0.0.1:0"),
    "http": TransportCase("http", "http://127.0.0.1:0", backends=("asyncio",)),
    "kafka": TransportCase("kafka", "kafka://{broker}/{namespace}", broker=True),
}


def transport_options(transport: TransportCase) -> dict[str, dict[str, Any]] | None:
    """The ``transport_options`` every process of ``transport`` gets (None: none)."""
    if not transport.options:
        return None
    return {k: dict(v) for k, v in transport.options.items()}


@dataclasses.dataclass(frozen=True)
class FaultLink:
    """A `FaultProxy` placed on the path of one process: ``reach`` holds the settings
    (``listen``, ``connect``, ``transport_options``) that process starts with."""

    proxy: FaultProxy
    reach: dict[str, Any]


#: kafka-python notices a connection whose bytes a blackhole swallowed only when a
#: request on it times out (then it reconnects): the proxied process's
#: ``request_timeout_ms``, instead of the transport's 10 s, so that healing is quick.
PROXIED_REQUEST_TIMEOUT_MS = 2_000


@asynccontextmanager
async def fault_link(
    transport: TransportCase, server_url: str, *, seed: int | None = None
) -> AsyncIterator[FaultLink]:
    """A `FaultProxy` between a process and ``server_url`` (a process listening there).

    Direct links (TCP, HTTP): the process dials the proxy, which targets ``server_url``.
    Through a broker (Kafka): every connection of the process to the broker goes through
    the proxy, via kafka-python's ``proxy_url`` and a `ConnectTunnel` behind the proxy
    (the broker advertises one address to every client, so a proxy given as the
    bootstrap address would carry only the first connection); the other processes reach
    the broker directly.
    """
    options = transport_options(transport) or {}
    if not transport.broker:
        async with FaultProxy(server_url, seed=seed) as proxy:
            reach = {
                "listen": list(transport.dialer_listen),
                "connect": [proxy.url],
                "transport_options": options or None,
            }
            yield FaultLink(proxy, reach)
        return
    async with ConnectTunnel() as tunnel, FaultProxy(tunnel.url, seed=seed) as proxy:
        own = {
            **options.get(transport.name, {}),
            "proxy_url": proxy.url,
            "request_timeout_ms": PROXIED_REQUEST_TIMEOUT_MS,
        }
        reach = {
            "listen": [],
            "connect": [server_url],
            "transport_options": {**options, transport.name: own},
        }
        yield FaultLink(proxy, reach)


class NodeError(Exception):
    """A command failed in a node; ``type`` names the exception raised there."""

    def __init__(self, type: str, detail: str) -> None:
        super().__init__(f"{type}: {detail}")
        self.type = type


class NodeGone(Exception):
    """The node exited (or was killed) before it answered."""


class NodeProcess:
    """One ``_node.py`` process."""

    def __init__(self, name: str, process: anyio.abc.Process, stderr: Path) -> None:
        self.name = name
        self.process = process
        self.stderr = stderr
        self.urls: tuple[str, ...] = ()
        self._numbers = itertools.count()
        self._waiting: dict[int, MemoryObjectSendStream[dict[str, Any]]] = {}
        self._gone = False
        self._send_lock = anyio.Lock()  # trio refuses two tasks writing one pipe at once

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def rss(self) -> int:
        """Resident memory in bytes (Linux ``/proc``)."""
        fields = Path(f"/proc/{self.pid}/statm").read_text().split()
        return int(fields[1]) * _PAGE

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush."""
        if self.alive:
            self.process.kill()

    async def call(self, cmd: str, **arguments: Any) -> Any:
        """Run a command in the node; return its answer.

        Raises:
            NodeError: it failed there. NodeGone: the node exited first.
        """
        if self._gone:
            raise NodeGone(f"node {self.name!r} is gone")
        number = next(self._numbers)
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
        line = json.dumps({"id": number, "cmd": cmd, **arguments}).encode() + b"\n"
        assert self.process.stdin is not None
        with send, receive:
            self._waiting[number] = send
            try:
                async with self._send_lock:
                    await self.process.stdin.send(line)
                answer = await receive.receive()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                raise NodeGone(f"node {self.name!r} exited before answering {cmd!r}") from None
            finally:
                self._waiting.pop(number, None)
        if "error" in answer:
            raise NodeError(answer["error"]["type"], answer["error"]["detail"])
        return answer["ok"]

    async def _read(self) -> None:
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        try:
            while True:
                try:
                    line = await lines.receive_until(b"\n", 64 << 20)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return
                message = json.loads(line)
                waiter = self._waiting.pop(message.get("id"), None)
                if waiter is not None:
                    waiter.send_nowait(message)
        finally:
            self._gone = True
            for waiter in self._waiting.values():
                waiter.close()


class Nodes:
    """Starts node processes for one test."""

    def __init__(self, task_group: anyio.abc.TaskGroup, directory: Path, backend: str) -> None:
        self.task_group = task_group
        self.directory = directory
        self.backend = backend
        self.started: list[NodeProcess] = []

    async def spawn(self, name: str, **start: Any) -> NodeProcess:
        """Start a node running a dispatcher ``name`` (``start``: its settings); return
        once it serves."""
        stderr = self.directory / f"node-{name}-{len(self.started)}.stderr"
        with stderr.open("wb") as stderr_file:
            process = await anyio.open_process(
                [sys.executable, str(NODE), self.backend], stderr=stderr_file
            )
        node = NodeProcess(name, process, stderr)
        self.started.append(node)
        self.task_group.start_soon(node._read)
        node.urls = tuple(await node.call("start", process_id=name, **start))
        return node

    async def aclose(self) -> None:
        for node in self.started:
            node.kill()
        with anyio.CancelScope(shield=True):
            for node in self.started:
                await node.process.wait()
                await node.process.aclose()

    def stderr_report(self) -> str:
        parts = []
        for node in self.started:
            text = node.stderr.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- stderr of node {node.name!r} ({node.stderr.name}) ---\n{text}")
        return "\n".join(parts)


@asynccontextmanager
async def open_nodes(directory: Path, backend: str) -> AsyncIterator[Nodes]:
    """`Nodes` whose processes are all killed on exit; their stderr is printed then."""
    async with anyio.create_task_group() as task_group:
        nodes = Nodes(task_group, directory, backend)
        try:
            yield nodes
        finally:
            await nodes.aclose()
            report = nodes.stderr_report()
            if report:
                print(report)
            task_group.cancel_scope.cancel()


def mib(size: float) -> float:
    """Bytes to MiB, one decimal."""
    return round(size / (1 << 20), 1)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
