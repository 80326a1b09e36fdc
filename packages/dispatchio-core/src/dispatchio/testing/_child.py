"""A peer process for the conformance suite, driven by JSON lines (never pickle).

Run as ``python -m dispatchio.testing._child [asyncio|trio]``. Each line on stdin is a
command ``{"id": n, "cmd": name, ...}``; each answer is one line on stdout,
``{"id": n, "ok": value}`` or ``{"id": n, "error": {"type": name, "detail": text}}``.
Unsolicited ``{"event": ...}`` lines tell the parent what happened, so it can wait on
events instead of sleeping. Commands run concurrently, each in a task of its own.

Commands (arguments in brackets are optional):

* ``start``: process_id, [listen], [connect], [transport_options], [heartbeat_interval],
  [heartbeat_tolerance], [reply_timeout], [max_message_size]: run a dispatcher; answers
  its bound URLs.
* ``listener``: listener, behaviour (one of `BEHAVIOURS`), [groups]: register a listener.
* ``subscribe`` / ``unregister``: group, listener / listener.
* ``wait_peer``: process. ``wait_listener``: listener. ``wait_subscribers``: group, count.
* ``request``: message, [timeout]: answers the response's fields.
* ``send``: message. ``send_many``: destination, n, [type]: sends contents 0..n-1.
* ``release``: listener, [content]: replies to the oldest deferred message of a listener.
* ``records``: listener, count: waits until a recording listener has seen ``count``
  messages, then answers what it recorded, in order.
* ``stop``: leave ``async with dispatcher:`` (a graceful close), answer, exit.

A ``message`` is a dict of `Message` fields (``type`` required).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from dispatchio import DEFERRED, BasicMessageListener, Message, MessageDispatcher

#: Seconds a "blocking_record" listener suspends on a blocking message.
BLOCKING_PAUSE = 0.05

BEHAVIOURS = ("echo", "len", "raise", "defer", "record", "blocking_record")
"""What a listener registered with the ``listener`` command does with a message:

* ``echo``: replies with the content.
* ``len``: replies with ``len(content)``.
* ``raise``: raises ``RuntimeError``.
* ``defer``: keeps the message (``release`` answers it) and emits a ``deferred`` event.
* ``record``: records the content, no reply.
* ``blocking_record``: records ``"start <content>"``, suspends for `BLOCKING_PAUSE` if the
  message is blocking (else not at all), records ``"end <content>"``.
"""


class CommandError(Exception):
    """A command was malformed or failed; reported to the parent, never fatal."""


class Child:
    """The state of one child process: its dispatcher and its listeners' records."""

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self.task_group = task_group
        self.dispatcher: MessageDispatcher | None = None
        self.stop_requested = anyio.Event()
        self.stopped = anyio.Event()
        self.records: dict[Any, list[Any]] = {}
        self.record_changed = anyio.Event()
        self.deferred: dict[Any, collections.deque[Message]] = {}

    # ------------------------------------------------------------------ plumbing

    def emit(self, line: dict[str, Any]) -> None:
        out = sys.stdout.buffer
        out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        out.flush()

    async def run_command(self, command: dict[str, Any]) -> None:
        number = command.get("id")
        try:
            name = command["cmd"]
            handler: Callable[[dict[str, Any]], Awaitable[Any]] | None = getattr(
                self, f"cmd_{name}", None
            )
            if handler is None:
                raise CommandError(f"unknown command {name!r}")
            result = await handler(command)
        except Exception as exc:
            self.emit({"id": number, "error": {"type": type(exc).__name__, "detail": str(exc)}})
        else:
            self.emit({"id": number, "ok": result})

    @property
    def running(self) -> MessageDispatcher:
        if self.dispatcher is None:
            raise CommandError("no dispatcher: send 'start' first")
        return self.dispatcher

    # ------------------------------------------------------------------ commands

    async def cmd_start(self, command: dict[str, Any]) -> list[str]:
        if self.dispatcher is not None:
            raise CommandError("already started")
        kwargs: dict[str, Any] = {}
        for name in (
            "listen",
            "connect",
            "transport_options",
            "heartbeat_interval",
            "heartbeat_tolerance",
            "reply_timeout",
            "max_message_size",
        ):
            # Only what was given: a dispatcher without transports takes none of these.
            if command.get(name):
                kwargs[name] = command[name]
        dispatcher = MessageDispatcher(command["process_id"], **kwargs)
        await self.task_group.start(self._serve, dispatcher)
        self.dispatcher = dispatcher
        return list(getattr(dispatcher, "listen_urls", ()))

    async def _serve(
        self, dispatcher: MessageDispatcher, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        try:
            async with dispatcher:
                task_status.started()
                await self.stop_requested.wait()
        finally:
            self.stopped.set()

    async def cmd_stop(self, command: dict[str, Any]) -> None:
        self.stop_requested.set()
        if self.dispatcher is not None:
            await self.stopped.wait()
        self.task_group.cancel_scope.cancel()

    async def cmd_listener(self, command: dict[str, Any]) -> None:
        dispatcher = self.running
        lid = command["listener"]
        behaviour = command["behaviour"]
        if behaviour not in BEHAVIOURS:
            raise CommandError(f"unknown behaviour {behaviour!r}; known: {BEHAVIOURS}")
        make: Callable[[Any], Callable[[Message], Any]] = getattr(self, f"_make_{behaviour}")
        listener = BasicMessageListener(lid)
        listener.add_rule(callback=make(lid))
        dispatcher.register(listener)
        for group in command.get("groups", ()):
            dispatcher.subscribe(group, lid)

    async def cmd_subscribe(self, command: dict[str, Any]) -> None:
        self.running.subscribe(command["group"], command["listener"])

    async def cmd_unregister(self, command: dict[str, Any]) -> None:
        self.running.unregister(command["listener"])

    async def cmd_wait_peer(self, command: dict[str, Any]) -> None:
        await self.running.wait_for_peer(command["process"])

    async def cmd_wait_listener(self, command: dict[str, Any]) -> None:
        await self.running.wait_for_listener(command["listener"])

    async def cmd_wait_subscribers(self, command: dict[str, Any]) -> None:
        await self.running.wait_for_subscribers(command["group"], command["count"])

    async def cmd_request(self, command: dict[str, Any]) -> dict[str, Any]:
        message = Message(**command["message"])
        reply = await self.running.request(message, timeout=command.get("timeout"))
        return reply.to_dict()

    async def cmd_send(self, command: dict[str, Any]) -> None:
        await self.running.send(Message(**command["message"]))

    async def cmd_send_many(self, command: dict[str, Any]) -> int:
        dispatcher = self.running
        destination = command["destination"]
        kind = command.get("type", "item")
        n: int = command["n"]
        for i in range(n):
            await dispatcher.send(Message(kind, i, destination=destination))
        return n

    async def cmd_release(self, command: dict[str, Any]) -> None:
        held = self.deferred.get(command["listener"])
        if not held:
            raise CommandError(f"listener {command['listener']!r} holds no deferred message")
        await self.running.reply(held.popleft(), command.get("content"))

    async def cmd_records(self, command: dict[str, Any]) -> list[Any]:
        lid = command["listener"]
        while len(self.records.get(lid, ())) < command["count"]:
            await self.record_changed.wait()
        return self.records[lid]

    # ------------------------------------------------------------------ behaviours

    def _record(self, lid: Any, item: Any) -> None:
        self.records.setdefault(lid, []).append(item)
        changed, self.record_changed = self.record_changed, anyio.Event()
        changed.set()

    def _make_echo(self, lid: Any) -> Callable[[Message], Any]:
        return lambda message: message.content

    def _make_len(self, lid: Any) -> Callable[[Message], Any]:
        return lambda message: len(message.content)

    def _make_raise(self, lid: Any) -> Callable[[Message], Any]:
        def fail(message: Message) -> Any:
            raise RuntimeError(f"listener {lid!r} raised on purpose")

        return fail

    def _make_defer(self, lid: Any) -> Callable[[Message], Any]:
        def keep(message: Message) -> Any:
            self.deferred.setdefault(lid, collections.deque()).append(message)
            self.emit({"event": "deferred", "listener": lid, "content": message.content})
            return DEFERRED

        return keep

    def _make_record(self, lid: Any) -> Callable[[Message], Any]:
        def record(message: Message) -> None:
            self._record(lid, message.content)

        return record

    def _make_blocking_record(self, lid: Any) -> Callable[[Message], Awaitable[None]]:
        async def record(message: Message) -> None:
            self._record(lid, f"start {message.content}")
            if message.blocking:
                await anyio.sleep(BLOCKING_PAUSE)
            self._record(lid, f"end {message.content}")

        return record


async def _read_lines(fd: int) -> Any:
    os.set_blocking(fd, False)
    buffer = b""
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line


async def main() -> None:
    """Serve commands from stdin until ``stop`` or end of input."""
    async with anyio.create_task_group() as task_group:
        child = Child(task_group)
        async for line in _read_lines(sys.stdin.fileno()):
            try:
                command = json.loads(line)
            except ValueError as exc:
                child.emit({"id": None, "error": {"type": "ValueError", "detail": str(exc)}})
                continue
            task_group.start_soon(child.run_command, command)
        # End of input: the parent went away; stop as "stop" would.
        child.stop_requested.set()
        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
