"""The parent's side of the child processes: start them, drive them, kill them.

A `Peer` is one child process (``python -m dispatchio.testing._child``) spoken to over its
pipes in JSON lines. `Peers` starts them inside a task group that the suite's fixture
owns, and kills every child still alive when the fixture ends, so nothing leaks.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from dispatchio import MessageDispatcher

_MAX_LINE = 64 << 20


class ChildError(Exception):
    """A command failed in a child process; ``type`` names the exception raised there."""

    def __init__(self, type: str, detail: str) -> None:
        super().__init__(f"{type}: {detail}")
        self.type = type
        self.detail = detail


class ChildGone(Exception):
    """The child process exited (or was killed) before it answered."""


class Peer:
    """One child process running a dispatcher, driven by commands (see ``_child``)."""

    def __init__(self, process_id: str, process: anyio.abc.Process, stderr: Path) -> None:
        self.process_id = process_id
        self.process = process
        self.stderr = stderr
        #: The URLs the child's dispatcher bound (set by `Peers.spawn`).
        self.urls: tuple[str, ...] = ()
        self._numbers = itertools.count()
        self._waiting: dict[int, MemoryObjectSendStream[dict[str, Any]]] = {}
        self._events_send, self.events = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        self._gone = False

    async def call(self, cmd: str, **arguments: Any) -> Any:
        """Run one command in the child and return its answer.

        Raises:
            ChildError: the command failed there (``type`` names the exception).
            ChildGone: the child exited first.
        """
        if self._gone:
            raise ChildGone(f"child {self.process_id!r} is gone")
        number = next(self._numbers)
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
        line = json.dumps({"id": number, "cmd": cmd, **arguments}).encode() + b"\n"
        assert self.process.stdin is not None
        with send, receive:
            self._waiting[number] = send
            try:
                await self.process.stdin.send(line)
                answer = await receive.receive()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise ChildGone(f"child {self.process_id!r} is gone") from exc
            except anyio.EndOfStream:
                raise ChildGone(
                    f"child {self.process_id!r} exited before answering {cmd!r}"
                ) from None
            finally:
                self._waiting.pop(number, None)
        if "error" in answer:
            raise ChildError(answer["error"]["type"], answer["error"]["detail"])
        return answer["ok"]

    async def event(self, kind: str) -> dict[str, Any]:
        """Wait for the next unsolicited event of kind ``kind`` (earlier others are dropped)."""
        async for event in self.events:
            if event.get("event") == kind:
                return event
        raise ChildGone(f"child {self.process_id!r} exited before a {kind!r} event")

    def kill(self) -> None:
        """SIGKILL the child (no goodbye, no flush)."""
        if self.process.returncode is None:
            self.process.kill()

    @property
    def alive(self) -> bool:
        """Whether the child process has not exited."""
        return self.process.returncode is None

    async def _read(self) -> None:
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        try:
            while True:
                try:
                    line = await lines.receive_until(b"\n", _MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # not ours: something in the child printed to stdout
                if "event" in message:
                    self._events_send.send_nowait(message)
                    continue
                waiter = self._waiting.pop(message.get("id"), None)
                if waiter is not None:
                    waiter.send_nowait(message)
        finally:
            self._gone = True
            self._events_send.close()
            for waiter in self._waiting.values():
                waiter.close()
            self._waiting.clear()


class Peers:
    """Starts child processes for one test, and the test process's own dispatcher."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        *,
        url: str,
        transport_options: Mapping[str, Mapping[str, Any]],
        backend: str,
        directory: Path,
        heartbeat_interval: float,
        heartbeat_tolerance: int,
        reply_timeout: float,
    ) -> None:
        self.task_group = task_group
        self.url = url
        self.transport_options = transport_options
        self.backend = backend
        self.directory = directory
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_tolerance = heartbeat_tolerance
        self.reply_timeout = reply_timeout
        self.children: list[Peer] = []
        self.local: MessageDispatcher | None = None

    def settings(self) -> dict[str, Any]:
        """The dispatcher settings every process of the test shares."""
        settings: dict[str, Any] = {
            "heartbeat_interval": self.heartbeat_interval,
            "heartbeat_tolerance": self.heartbeat_tolerance,
            "reply_timeout": self.reply_timeout,
        }
        if self.transport_options:
            settings["transport_options"] = {k: dict(v) for k, v in self.transport_options.items()}
        return settings

    def dispatcher(self, process_id: str = "a", **overrides: Any) -> MessageDispatcher:
        """The test process's dispatcher, listening on the transport URL.

        Enter it with ``async with``; children started afterwards connect to it.
        """
        settings = {"listen": [self.url], **self.settings(), **overrides}
        self.local = MessageDispatcher(process_id, **settings)
        return self.local

    async def spawn(
        self,
        process_id: str,
        *,
        listen: Sequence[str] | None = None,
        connect: Sequence[str] | None = None,
        **overrides: Any,
    ) -> Peer:
        """Start a child process running a dispatcher ``process_id``; return once it serves.

        By default it listens on the transport URL and connects to the test process's
        dispatcher (which must be running).
        """
        if connect is None:
            connect = self.local.listen_urls if self.local is not None else ()
        stderr = self.directory / f"child-{process_id}-{len(self.children)}.stderr"
        with stderr.open("wb") as stderr_file:
            process = await anyio.open_process(
                [sys.executable, "-m", "dispatchio.testing._child", self.backend],
                stderr=stderr_file,
            )
        peer = Peer(process_id, process, stderr)
        self.children.append(peer)
        self.task_group.start_soon(peer._read)
        urls = await peer.call(
            "start",
            process_id=process_id,
            listen=list(listen if listen is not None else [self.url]),
            connect=list(connect),
            **{**self.settings(), **overrides},
        )
        peer.urls = tuple(urls)
        return peer

    async def aclose(self) -> None:
        """Kill every child still running and reap it."""
        for peer in self.children:
            peer.kill()
            peer.events.close()
        with anyio.CancelScope(shield=True):
            for peer in self.children:
                await peer.process.wait()
                await peer.process.aclose()

    def stderr_report(self) -> str:
        """What the children wrote to stderr, for a failing test's report."""
        parts = []
        for peer in self.children:
            text = peer.stderr.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- stderr of child {peer.process_id!r} ---\n{text}")
        return "\n".join(parts)


@asynccontextmanager
async def open_peers(**settings: Any) -> AsyncIterator[Peers]:
    """`Peers` whose children are all killed on exit."""
    async with anyio.create_task_group() as task_group:
        peers = Peers(task_group, **settings)
        try:
            yield peers
        finally:
            await peers.aclose()
            report = peers.stderr_report()
            if report:
                print(report)
            task_group.cancel_scope.cancel()
