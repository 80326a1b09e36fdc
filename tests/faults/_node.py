"""A dispatcher process for the fault tests, driven over its pipes in JSON lines.

Run as ``python _node.py [asyncio|trio]``. Each stdin line is ``{"id": n, "cmd": name,
...}``; each answer one stdout line, ``{"id": n, "ok": value}`` or ``{"id": n, "error":
{"type": name, "detail": text}}``. Commands run concurrently, each in its own task.

Unlike the conformance suite's child (``dispatchio.testing._child``) this one can run a
steady mixed workload by itself (`Soak`), writing one record per message event to a
file, so the records of a process killed with SIGKILL survive up to its last flush.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import IO, Any

import anyio
import anyio.abc

from dispatchio import (
    DEFERRED,
    BasicMessageListener,
    DispatchError,
    Message,
    MessageDispatcher,
)

#: Seconds between two flushes of a workload's record file.
FLUSH_INTERVAL = 0.2


class CommandError(Exception):
    """A malformed command; reported to the parent."""


def directory_view(dispatcher: MessageDispatcher) -> dict[str, Any]:
    """What ``dispatcher`` knows of every process: ``{process: {"listeners": [...],
    "groups": {group: [...]}}}``, sorted, its own entry included."""
    return {
        str(entry["process"]): {
            "listeners": sorted(map(str, entry["listeners"])),
            "groups": {
                str(g["group"]): sorted(map(str, g["members"]))
                for g in entry["groups"]
                if g["members"]
            },
        }
        for entry in dispatcher.directory()["processes"]
    }


class Node:
    """One process's dispatcher and what its listeners saw."""

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        self.task_group = task_group
        self.dispatcher: MessageDispatcher | None = None
        self.stop_requested = anyio.Event()
        self.stopped = anyio.Event()
        self.records: dict[str, list[Any]] = {}
        self.changed = anyio.Event()
        self.held: list[Message] = []
        self.soak: Soak | None = None

    def emit(self, line: dict[str, Any]) -> None:
        out = sys.stdout.buffer
        out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        out.flush()

    async def run_command(self, command: dict[str, Any]) -> None:
        number = command.get("id")
        try:
            handler: Callable[[dict[str, Any]], Awaitable[Any]] | None = getattr(
                self, f"cmd_{command['cmd']}", None
            )
            if handler is None:
                raise CommandError(f"unknown command {command['cmd']!r}")
            result = await handler(command)
        except Exception as exc:
            inner = getattr(exc, "exceptions", None)  # an exception group: its first leaf
            while inner:
                exc = inner[0]
                inner = getattr(exc, "exceptions", None)
            self.emit({"id": number, "error": {"type": type(exc).__name__, "detail": str(exc)}})
        else:
            self.emit({"id": number, "ok": result})

    @property
    def running(self) -> MessageDispatcher:
        if self.dispatcher is None:
            raise CommandError("send 'start' first")
        return self.dispatcher

    def record(self, listener: str, item: Any) -> None:
        self.records.setdefault(listener, []).append(item)
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    def _hold(self, lid: str, message: Message) -> object:
        self.held.append(message)
        self.record(lid, _fields(message))
        return DEFERRED

    # ------------------------------------------------------------------ commands

    async def cmd_start(self, command: dict[str, Any]) -> list[str]:
        names = ["listen", "connect", "transport_options", "heartbeat_interval"]
        names += ["heartbeat_tolerance", "reply_timeout"]
        kwargs = {name: command[name] for name in names if command.get(name) is not None}
        dispatcher = MessageDispatcher(command["process_id"], **kwargs)
        if command.get("soak") is not None:
            # Registered before the dispatcher serves: through a broker, letters stored
            # for this process while it was down are read at once, and would come back
            # undeliverable to a listener registered later.
            self.soak = Soak(dispatcher, command["soak"])
        await self.task_group.start(self._serve, dispatcher)
        self.dispatcher = dispatcher
        return list(dispatcher.listen_urls)

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
        await self.stopped.wait()
        self.task_group.cancel_scope.cancel()

    async def cmd_add(self, command: dict[str, Any]) -> None:
        """Register a listener: ``echo`` replies with the content, ``hold`` keeps the
        message unanswered, ``drop`` forgets it unanswered, ``record`` records it."""
        lid, behaviour = command["listener"], command["behaviour"]
        listener = BasicMessageListener(lid)
        if behaviour == "echo":
            listener.add_rule(callback=lambda m: m.content)
        elif behaviour == "hold":
            listener.add_rule(callback=lambda m: self._hold(lid, m))
        elif behaviour == "drop":
            listener.add_rule(callback=lambda m: DEFERRED)
        elif behaviour == "record":
            listener.add_rule(callback=lambda m: self.record(lid, _fields(m)))
        else:
            raise CommandError(f"unknown behaviour {behaviour!r}")
        self.running.register(listener)
        for group in command.get("groups", ()):
            self.running.subscribe(group, lid)

    async def cmd_wait_listener(self, command: dict[str, Any]) -> None:
        timeout = command.get("timeout", 30)
        await self.running.wait_for_listener(command["listener"], timeout=timeout)

    async def cmd_wait_peer(self, command: dict[str, Any]) -> None:
        await self.running.wait_for_peer(command["process"], timeout=command.get("timeout", 30))

    async def cmd_wait_gone(self, command: dict[str, Any]) -> None:
        """Wait until ``process`` is no longer connected (lost or dormant)."""
        process = command["process"]
        # The dispatcher's own wait, woken by every change of its mesh (private: the
        # public API waits only for processes to come).
        await self.running._wait_until(
            lambda mesh: mesh is None or process not in mesh.peers,
            command.get("timeout", 30),
            f"process {process!r} is still connected",
        )

    async def cmd_peers(self, command: dict[str, Any]) -> list[str]:
        return sorted(map(str, self.running.peers))

    async def cmd_request(self, command: dict[str, Any]) -> dict[str, Any]:
        """Answers the outcome: ``ok`` or the exception's type name, and the time taken."""
        message = Message(command.get("type", "ask"), command.get("content"), **command["to"])
        start = time.monotonic()
        try:
            reply = await self.running.request(message, timeout=command.get("timeout"))
        except DispatchError as exc:
            return {"outcome": type(exc).__name__, "elapsed": time.monotonic() - start}
        return {
            "outcome": "ok",
            "content": reply.content,
            "process": reply.process,
            "elapsed": time.monotonic() - start,
        }

    async def cmd_send(self, command: dict[str, Any]) -> Any:
        message = Message(command.get("type", "note"), command.get("content"), **command["to"])
        await self.running.send(message, reply_timeout=command.get("reply_timeout"))
        return message.id

    async def cmd_records(self, command: dict[str, Any]) -> list[Any]:
        lid = command["listener"]
        while len(self.records.get(lid, ())) < command.get("count", 0):
            await self.changed.wait()
        return self.records.get(lid, [])

    async def cmd_counts(self, command: dict[str, Any]) -> dict[str, Any]:
        dispatcher = self.running
        return {**dispatcher.debug_counts(), "stats": dispatcher.stats.as_dict()}

    async def cmd_directory(self, command: dict[str, Any]) -> dict[str, Any]:
        return directory_view(self.running)

    async def cmd_churn(self, command: dict[str, Any]) -> None:
        """``cycles`` register/unregister pairs of listeners ``churn-<me>-<k>``, some of
        them subscribed to groups; about ``keep`` stay registered at any time."""
        dispatcher = self.running
        me = str(dispatcher.process_id)
        rng = random.Random(command["seed"])
        keep: int = command["keep"]
        groups: list[str] = command["groups"]
        live: list[str] = []
        for k in range(command["cycles"]):
            lid = f"churn-{me}-{k}"
            dispatcher.register(BasicMessageListener(lid))
            if rng.random() < 0.3:
                dispatcher.subscribe(rng.choice(groups), lid)
            live.append(lid)
            if len(live) > keep:
                dispatcher.unregister(live.pop(rng.randrange(len(live))))
            if k % 100 == 0:
                await anyio.lowlevel.checkpoint()  # let the links carry the deltas
        # The last ones go too, half of them, so unregistering is the final word for some.
        for lid in live[: len(live) // 2]:
            dispatcher.unregister(lid)

    async def cmd_barrier(self, command: dict[str, Any]) -> None:
        """Ask every process in ``peers`` something and wait for the answers: since links
        are FIFO, each of them has then applied everything this process sent it before."""
        dispatcher = self.running
        async with anyio.create_task_group() as tg:
            for peer in command["peers"]:
                message = Message("barrier", None, destination=f"echo-{peer}")
                # Behind whatever the peer still has to read (a broker inbox can hold a
                # long backlog of churn): the bound is the calling test's.
                tg.start_soon(functools.partial(dispatcher.request, message, timeout=120))

    async def cmd_soak(self, command: dict[str, Any]) -> None:
        """Register the workload's listeners (unless ``start`` had a ``soak`` setting: then
        its listeners are there, its settings rule), wait for ``wait_listeners`` and for
        ``wait_subscribers`` members of group ``all``, then start the workload."""
        dispatcher = self.running
        if self.soak is None:
            self.soak = Soak(dispatcher, command)
        for lid in command.get("wait_listeners", ()):
            await dispatcher.wait_for_listener(lid, timeout=30)
        await dispatcher.wait_for_subscribers("all", command.get("wait_subscribers", 0), timeout=30)
        await self.task_group.start(self.soak.run)

    async def cmd_soak_stop(self, command: dict[str, Any]) -> dict[str, Any]:
        """Stop the workload and wait (at most ``drain_timeout``) for the replies it
        waits for; answer what is still unresolved."""
        if self.soak is None:
            raise CommandError("no workload runs")
        return await self.soak.stop(command.get("drain_timeout", 10.0))

    async def cmd_soak_close(self, command: dict[str, Any]) -> None:
        """Flush and close the record file."""
        if self.soak is None:
            raise CommandError("no workload runs")
        self.soak.close()


def _fields(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "content": message.content,
        "process": message.process,
        "is_response": message.is_response,
        "error": message.error,
    }


class Soak:
    """A steady mix of requests, letters and group letters from this process to others.

    Listeners: ``echo-<me>`` answers, ``sink-<me>`` and ``g-<me>`` (in group ``all``)
    record what arrives, ``src-<me>`` is the source of everything sent here and records
    every response and returned letter. Records, one JSON list per line:

    * ``["req", id, to, n, outcome, elapsed, content_matches]``: a request and its end;
    * ``["let", to, seq, up]``: a plain letter sent, ``up`` whether ``to`` was connected
      then (False: it was dormant, its letters stored); ``["rr", id, to]``: a letter sent with
      ``response_required``; ``["grp", seq]``: a group letter sent;
    * ``["sent_err", kind, to, seq_or_id, error]``: ``send`` refused one (raised);
    * ``["let_in", from, incarnation, seq]``, ``["grp_in", from, incarnation, seq]``;
    * ``["back", id, error_code_or_None, content]``: a response or a returned letter
      arriving at ``src-<me>``.
    """

    def __init__(self, dispatcher: MessageDispatcher, config: dict[str, Any]) -> None:
        self.dispatcher = dispatcher
        self.me = str(dispatcher.process_id)
        self.others: list[str] = config["others"]
        self.incarnation: int = config["incarnation"]
        self.tick: float = config["tick"]
        self.timeout: float = config["timeout"]
        self.out: IO[str] = open(config["path"], "a", encoding="utf-8")  # noqa: SIM115
        self.seq = dict.fromkeys(self.others, 0)
        self.gseq = 0
        self.in_flight = 0
        self.requests: dict[int, tuple[str, float]] = {}  # in flight: to, when sent
        self.rr: dict[Any, tuple[str, float]] = {}  # waiting letters: to, when sent
        self.early: set[Any] = set()  # letters resolved before their send returned
        self.idle = anyio.Event()
        self.stopping = anyio.Event()
        self.quiet = anyio.Event()  # the workload sends nothing more
        self.done = anyio.Event()
        self.task_group: anyio.abc.TaskGroup | None = None
        d = dispatcher
        me = self.me
        src = BasicMessageListener(f"src-{me}")
        src.add_rule(callback=self._back)
        echo = BasicMessageListener(f"echo-{me}")
        echo.add_rule(callback=lambda m: m.content)
        sink = BasicMessageListener(f"sink-{me}")
        sink.add_rule(callback=lambda m: self._arrived("let_in", m))
        member = BasicMessageListener(f"g-{me}")
        member.add_rule(callback=lambda m: self._arrived("grp_in", m))
        for listener in (src, echo, sink, member):
            d.register(listener)
        d.subscribe("all", member.id)  # type: ignore[arg-type]

    def write(self, *record: Any) -> None:
        if self.out.closed:
            return
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _arrived(self, kind: str, message: Message) -> None:
        c = message.content
        self.write(kind, c["from"], c["inc"], c["seq"])
        # At once, so that the records of a process killed with SIGKILL show every letter
        # it handled: through a broker, one handled may be committed, never read again.
        if not self.out.closed:
            self.out.flush()

    def _back(self, message: Message) -> None:
        code = None if message.error is None else message.error.partition(":")[0]
        self.write("back", message.id, code, message.content)
        if message.id in self.rr:
            del self.rr[message.id]
            self._check_idle()
        elif message.type == "rr":
            # Back before `send` returned (the receiver was declared lost meanwhile).
            self.early.add(message.id)

    def _check_idle(self) -> None:
        if self.quiet.is_set() and not self.rr and not self.in_flight:
            self.idle.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            tg.start_soon(self._flusher)
            task_status.started()
            next_tick = anyio.current_time()
            k = 0
            while not self.stopping.is_set():
                await self._one_tick(tg, k)
                k += 1
                next_tick = max(next_tick + self.tick, anyio.current_time())
                await anyio.sleep_until(next_tick)  # the workload's own pace
            self.quiet.set()
            await self.done.wait()
            tg.cancel_scope.cancel()

    async def _one_tick(self, tg: anyio.abc.TaskGroup, k: int) -> None:
        d, me, inc = self.dispatcher, self.me, self.incarnation
        for other in self.others:
            seq = self.seq[other]
            content = {"from": me, "inc": inc, "seq": seq, "to": other}
            try:
                letter = Message("let", content, source=f"src-{me}", destination=f"sink-{other}")
                await d.send(letter)
            except DispatchError as exc:
                self.write("sent_err", "let", other, seq, type(exc).__name__)
            else:
                self.write("let", other, seq, other in d.peers)
                self.seq[other] = seq + 1
        target = self.others[k % len(self.others)]
        self.in_flight += 1
        tg.start_soon(self._request, target, k)
        message = Message(
            "rr",
            {"from": me, "k": k},
            source=f"src-{me}",
            destination=f"echo-{target}",
            response_required=True,
        )
        try:
            await d.send(message, reply_timeout=self.timeout)
        except DispatchError as exc:
            self.write("sent_err", "rr", target, message.id, type(exc).__name__)
        else:
            if message.id in self.early:
                self.early.discard(message.id)
            else:
                self.rr[message.id] = (target, time.monotonic())
            self.write("rr", message.id, target)
        if k % 5 == 0:
            content = {"from": me, "inc": inc, "seq": self.gseq}
            try:
                await d.send(Message("grp", content, source=f"src-{me}", group="all"))
            except DispatchError as exc:
                self.write("sent_err", "grp", None, self.gseq, type(exc).__name__)
            else:
                self.write("grp", self.gseq)
                self.gseq += 1

    async def _request(self, target: str, n: int) -> None:
        content = {"from": self.me, "n": n}
        message = Message("req", content, source=f"src-{self.me}", destination=f"echo-{target}")
        start = time.monotonic()
        self.requests[n] = (target, start)
        try:
            reply = await self.dispatcher.request(message, timeout=self.timeout)
        except DispatchError as exc:
            outcome, matches = type(exc).__name__, None
        else:
            outcome, matches = "ok", reply.content == content
        elapsed = round(time.monotonic() - start, 4)
        self.write("req", message.id, target, n, outcome, elapsed, matches)
        del self.requests[n]
        self.in_flight -= 1
        self._check_idle()

    async def _flusher(self) -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            self.out.flush()

    async def stop(self, drain_timeout: float) -> dict[str, Any]:
        self.stopping.set()
        with anyio.move_on_after(drain_timeout):
            # The tick in progress finishes first: what it sends is recorded as sent, so
            # it must be counted in the drain and arrive before the barrier's answer.
            await self.quiet.wait()
            self._check_idle()
            await self.idle.wait()
        now = time.monotonic()
        left: dict[str, Any] = {
            "unresolved_rr": [
                f"{mid} to {to}, {now - when:.1f} s ago" for mid, (to, when) in self.rr.items()
            ],
            "in_flight": [
                f"to {to}, {now - when:.1f} s ago" for to, when in self.requests.values()
            ],
        }
        if self.rr or self.requests:
            left["counts"] = self.dispatcher.debug_counts()
        self.done.set()
        self.out.flush()
        return left

    def close(self) -> None:
        self.out.flush()
        self.out.close()


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
    async with anyio.create_task_group() as task_group:
        node = Node(task_group)
        async for line in _read_lines(sys.stdin.fileno()):
            task_group.start_soon(node.run_command, json.loads(line))
        node.stop_requested.set()  # the parent went away
        task_group.cancel_scope.cancel()


if __name__ == "__main__":
    # Times and threads in every line: a failed run is read from these files afterwards.
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(threadName)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
