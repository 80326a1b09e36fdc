"""Cross-process benchmarks over TCP on loopback: dispatchio-tcp beside its peers.

Every figure is measured between two real OS processes: this one and a child
(`_tcp_child.py`) started here and stopped at the end. Peers: raw asyncio streams
(length-prefixed ~100-byte frames) and pyzmq; then dispatchio with the ``tcp://``
transport, on asyncio (the targets) and trio (reported beside).

* Every child stays up for the whole section, and dispatchio's repeats are interleaved
  with its peers' (A B C, B C A, ...; `_harness.interleave`): a row's ratio is the
  median of the per-round ratios, printed with their range.
* Latency: every round trip is timed; a repeat's figure is its p50, and the row is the
  median of the repeats' p50s. The sequential rate comes from the same repeats.
* Throughput: operations per second of a whole repeat.
* One-way: the sender sends ``n`` messages, then a fence; the receiver answers the fence
  with how many it got and whether they came in order, and the repeat counts only when
  all ``n`` arrived in order. The clock stops when the fence's answer is back.
* The asynchronous sides run in event loops of their own in helper threads
  (`_harness.event_loop`), which keeps their connections open between repeats; pyzmq's
  blocking sockets run in the main thread. Only one side runs at a time.

CPU placement: with two or more usable CPUs, this process and the child are pinned to two
different CPUs (`pinned`) for the section's duration. Unpinned, the scheduler sometimes
puts both on one CPU, which halves one-way throughput from one run to the next (seen on
the 2-CPU reference machine: 110,000 against 210,000 msg/s). Every row, peers included,
runs under the same placement. ``BENCH_TCP_PIN=0`` turns pinning off.

All imports of pyzmq, anyio and dispatchio are lazy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from _harness import (
    Config,
    Kind,
    PeerResult,
    Row,
    Sampler,
    Stats,
    Unit,
    async_sampler,
    event_loop,
    interleave,
    paired,
    sync_sampler,
)

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from dispatchio import MessageDispatcher

CHILD = Path(__file__).with_name("_tcp_child.py")

US: Unit = "µs"
MSGS: Unit = "msg/s"
RTS: Unit = "rt/s"

CONCURRENCY = 32
PAYLOAD = 100  # bytes after the 4-byte length prefix
BATCH = 64  # raw one-way: frames per write

# Counts per timed repeat, scaled by Config.async_scale.
N_SEQ = 4_000  # sequential round trips (~90 µs each)
N_CONC = 16_000  # round trips spread over CONCURRENCY connections or tasks
N_ONEWAY_RAW = 500_000
N_ONEWAY_ZMQ = 300_000
N_ONEWAY_DIO = 150_000
MAX_REPEATS = 5  # keeps the whole section under a minute

HEAD = struct.Struct(">I")
HEAD_SEQ = struct.Struct(">IQ")
REPORT = struct.Struct(">QQ")
ECHO_FRAME = HEAD.pack(PAYLOAD) + bytes(range(PAYLOAD))
FILLER = b"x" * (PAYLOAD - 8)
FENCE = HEAD.pack(0)


@functools.cache
def _cpus() -> tuple[int, int] | None:
    """Two CPUs to pin this process and the child to, or None (pinning off or impossible).

    Cached: asked again once this process is pinned, it must give the same answer.
    """
    if os.environ.get("BENCH_TCP_PIN", "1") == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[1]) if len(usable) >= 2 else None


@contextlib.contextmanager
def pinned() -> Iterator[str]:
    """Pin this process to one CPU while inside; yield a description for the table."""
    cpus = _cpus()
    if cpus is None:
        yield "not pinned"
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        yield f"this process on CPU {cpus[0]}, the child on CPU {cpus[1]}"
    finally:
        os.sched_setaffinity(0, before)


def _cfg(cfg: Config) -> Config:
    return dataclasses.replace(cfg, repeats=min(cfg.repeats, MAX_REPEATS))


def _scaled(n: int, cfg: Config) -> int:
    return max(200, int(n * cfg.async_scale))


# --------------------------------------------------------------------------- the child


class Child:
    """A `_tcp_child.py` process: its ready line, commands over stdin, a clean stop."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        cpus = _cpus()
        if cpus is not None:
            os.sched_setaffinity(self.proc.pid, {cpus[1]})
        try:
            self.info = self._read_line()
        except BaseException:
            self.close()
            raise

    def _read_line(self) -> dict[str, Any]:
        stdout = cast("IO[str]", self.proc.stdout)
        line = stdout.readline()
        if not line:
            code = self.proc.wait(10)
            raise RuntimeError(f"benchmark child {' '.join(self.args)} exited with code {code}")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, line: str) -> dict[str, Any]:
        stdin = cast("IO[str]", self.proc.stdin)
        stdin.write(line + "\n")
        stdin.flush()
        return self._read_line()

    def close(self) -> None:
        """Close its stdin (the stop signal); kill it if it has not left after 15 s."""
        with contextlib.suppress(OSError):
            cast("IO[str]", self.proc.stdin).close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            cast("IO[str]", self.proc.stdout).close()


@contextlib.contextmanager
def child(*args: str, env: dict[str, str] | None = None) -> Iterator[Child]:
    proc = Child(*args, env=env)
    try:
        yield proc
    finally:
        proc.close()


# --------------------------------------------------------------------------- timing


def _p50_us(durations: list[int]) -> float:
    return statistics.median(durations) / 1000


async def _async_repeat(
    one: Callable[[int], Awaitable[object]], number: int
) -> tuple[float, float]:
    """``number`` sequential ``await one(i)``, each timed: (p50 in µs, round trips/s)."""
    clock = time.perf_counter_ns
    gc.collect()
    durations = [0] * number
    t0 = clock()
    for i in range(number):
        start = clock()
        await one(i)
        durations[i] = clock() - start
    return _p50_us(durations), number * 1e9 / (clock() - t0)


def _sync_repeat(one: Callable[[int], object], number: int) -> tuple[float, float]:
    """The blocking twin of `_async_repeat`."""
    clock = time.perf_counter_ns
    gc.collect()
    durations = [0] * number
    t0 = clock()
    for i in range(number):
        start = clock()
        one(i)
        durations[i] = clock() - start
    return _p50_us(durations), number * 1e9 / (clock() - t0)


class Latency:
    """A sampler of sequential round trips: a repeat's figure is its p50 (µs).

    The rate of every repeat is kept too: `rates` gives the last ``repeats`` of them,
    the timed rounds of an `interleave` (its warm-up rounds come first).
    """

    def __init__(self, repeat: Callable[[], tuple[float, float]]) -> None:
        self._repeat = repeat
        self._rates: list[float] = []

    def __call__(self) -> float:
        p50, rate = self._repeat()
        self._rates.append(rate)
        return p50

    def rates(self, repeats: int) -> Stats:
        return Stats(tuple(self._rates[-repeats:]))


def async_latency(
    portal: BlockingPortal, one: Callable[[int], Awaitable[object]], n: int
) -> Latency:
    return Latency(lambda: portal.call(_async_repeat, one, n))


def _check_fence(kind: str, sent: int, count: int, in_order: bool) -> None:
    if count != sent or not in_order:
        raise RuntimeError(
            f"{kind}: the receiver got {count} of {sent} messages"
            + ("" if in_order else ", out of order")
        )


# --------------------------------------------------------------------------- peers: raw asyncio


@dataclass(frozen=True)
class RawSide:
    """Raw asyncio streams to the raw child: one echo link, 32 echo links, a sink."""

    round_trip: Callable[[int], Awaitable[bytes]]
    concurrent: Callable[[int], Awaitable[None]]
    one_way: Callable[[int], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_links(echo_port: int, sink_port: int) -> AsyncIterator[RawSide]:
    """Connect to the raw child (inside an asyncio loop) and yield the loops to time."""

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    def echo_client(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Callable[[int], Awaitable[bytes]]:
        readexactly = reader.readexactly
        write = writer.write
        unpack = HEAD.unpack

        async def round_trip(_: int) -> bytes:
            write(ECHO_FRAME)
            head = await readexactly(4)
            return await readexactly(unpack(head)[0])

        return round_trip

    links = [await connect(echo_port) for _ in range(CONCURRENCY)]
    sink_reader, sink_writer = await connect(sink_port)
    try:
        first = echo_client(*links[0])
        if await first(0) != ECHO_FRAME[4:]:
            raise RuntimeError("the raw echo child answered something else")
        clients = [echo_client(*link) for link in links]

        async def concurrent(n: int) -> None:
            per = max(1, n // CONCURRENCY)

            async def run(rt: Callable[[int], Awaitable[bytes]]) -> None:
                for i in range(per):
                    await rt(i)

            await asyncio.gather(*(run(rt) for rt in clients))

        async def one_way(n: int) -> None:
            write = sink_writer.write
            drain = sink_writer.drain
            pack = HEAD_SEQ.pack
            batch: list[bytes] = []
            append = batch.append
            for i in range(n):
                append(pack(PAYLOAD, i) + FILLER)
                if len(batch) == BATCH:
                    write(b"".join(batch))
                    batch.clear()
                    await drain()
            batch.append(FENCE)
            write(b"".join(batch))
            await drain()
            count, in_order = REPORT.unpack(await sink_reader.readexactly(REPORT.size))
            _check_fence("raw one-way", n, count, bool(in_order))

        yield RawSide(first, concurrent, one_way)
    finally:
        for _, writer in [*links, (sink_reader, sink_writer)]:
            writer.close()


@contextlib.contextmanager
def raw_side(portal: BlockingPortal) -> Iterator[RawSide]:
    """The raw child, and links to it in ``portal``'s (asyncio) loop."""
    with (
        child("raw") as proc,
        portal.wrap_async_context_manager(raw_links(proc.info["echo"], proc.info["sink"])) as side,
    ):
        yield side


# --------------------------------------------------------------------------- peers: pyzmq


@dataclass(frozen=True)
class ZmqSide:
    """pyzmq blocking sockets to the zmq child: REQ/REP round trips, PUSH/PULL one-way."""

    round_trip: Callable[[int], bytes]
    one_way: Callable[[int], None]


@contextlib.contextmanager
def zmq_side() -> Iterator[ZmqSide]:
    import zmq

    with child("zmq") as proc:
        ctx = zmq.Context()
        try:
            req = ctx.socket(zmq.REQ)
            push = ctx.socket(zmq.PUSH)
            ack = ctx.socket(zmq.PULL)
            for sock in (req, push, ack):
                sock.setsockopt(zmq.LINGER, 0)
            req.connect(f"tcp://127.0.0.1:{proc.info['rep']}")
            push.connect(f"tcp://127.0.0.1:{proc.info['pull']}")
            ack.connect(f"tcp://127.0.0.1:{proc.info['ack']}")
            payload = ECHO_FRAME[4:]

            def round_trip(_: int) -> bytes:
                req.send(payload)
                return req.recv()

            if round_trip(0) != payload:
                raise RuntimeError("the zmq REP child answered something else")

            def one_way(n: int) -> None:
                send = push.send
                pack = struct.Struct(">Q").pack
                filler = FILLER + b"xxxx"  # same 100-byte payload as the raw frames
                for i in range(n):
                    send(pack(i) + filler)
                send(b"")
                count, in_order = REPORT.unpack(ack.recv())
                _check_fence("pyzmq PUSH/PULL", n, count, bool(in_order))

            yield ZmqSide(round_trip, one_way)
        finally:
            ctx.destroy(linger=0)


# --------------------------------------------------------------------------- peers: table


# key -> (label, unit, reference figure for the project's reference machine)
PEERS: dict[str, tuple[str, Unit, float | None]] = {
    "raw_p50": ("raw asyncio streams echo, p50", US, 91),
    "raw_seq": ("raw asyncio streams echo, sequential", RTS, 10_500),
    "raw_32": ("raw asyncio streams echo, 32 connections", RTS, 120_000),
    "raw_oneway": ("raw asyncio streams one-way, batched writes", MSGS, 2_100_000),
    "zmq_p50": ("pyzmq REQ/REP, p50", US, 98),
    "zmq_seq": ("pyzmq REQ/REP, sequential", RTS, None),
    "zmq_oneway": ("pyzmq PUSH/PULL one-way", MSGS, 1_470_000),
}
NOTES = {
    "raw_oneway": f"{BATCH} frames per write; receiver checks order",
    "zmq_oneway": "receiver checks order",
}


# --------------------------------------------------------------------------- dispatchio


@dataclass(frozen=True)
class DioSide:
    """A dispatcher connected to a ``dio`` child: the loops to time."""

    round_trip: Callable[[int], Awaitable[object]]
    concurrent: Callable[[int], Awaitable[None]]
    one_way: OneWay


@contextlib.asynccontextmanager
async def dio_session(url: str) -> AsyncIterator[DioSide]:
    """A dispatcher joined to the child at ``url``, with its echo and sink listeners seen."""
    from dispatchio import Message, MessageDispatcher

    dispatcher = MessageDispatcher("bench-parent", connect=[url], reply_timeout=60.0)
    async with dispatcher:
        await dispatcher.wait_for_listener("echo", timeout=10)
        await dispatcher.wait_for_listener("sink", timeout=10)
        request = dispatcher.request

        async def round_trip(i: int) -> Message:
            return await request(Message("ping", i, destination="echo"))

        reply = await round_trip(7)
        if reply.content != 7:
            raise RuntimeError(f"unexpected reply {reply!r}")
        yield DioSide(round_trip, _concurrent_loop(round_trip), OneWay(dispatcher))


@contextlib.contextmanager
def dio_side(portal: BlockingPortal, backend: str) -> Iterator[DioSide]:
    """A ``dio`` child on ``backend`` and a dispatcher joined to it in ``portal``'s loop.

    On leaving, checks that the child's sink received every one-way message, in order.
    """
    with child("dio", backend) as proc:
        with portal.wrap_async_context_manager(dio_session(proc.info["url"])) as side:
            yield side
        report = proc.command("report")
    if report.get("count") != side.one_way.sent or not report.get("in_order"):
        raise RuntimeError(f"the child's sink reports {report}, but {side.one_way.sent} were sent")


def _concurrent_loop(
    round_trip: Callable[[int], Awaitable[object]],
) -> Callable[[int], Awaitable[None]]:
    import anyio

    async def run(per: int) -> None:
        for i in range(per):
            await round_trip(i)

    async def loop(n: int) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(run, max(1, n // CONCURRENCY))

    return loop


class OneWay:
    """``n`` one-way sends to the child's sink, then a ``done`` request as the fence.

    A plain loop of ``await send(...)``, as a user would write it: `MessageDispatcher.send`
    to another process does not wait for the transport (its outbox is bounded and its
    overflow is an error), but it lets the transports' writers run every 64 such sends.

    Each call after the first also records the CPU time per message of both sides
    (``cpu``: sender, receiver, in µs), which a busy machine disturbs far less than the
    rate: this process's from `time.process_time`, the child's from the fence's answer.
    """

    def __init__(self, dispatcher: MessageDispatcher) -> None:
        self.dispatcher = dispatcher
        self.sent = 0
        self.cpu: list[tuple[float, float]] = []
        self._child_cpu: float | None = None  # the child's CPU seconds at the last fence

    async def __call__(self, n: int) -> None:
        from dispatchio import Message

        send = self.dispatcher.send
        msg = Message
        start = time.process_time()
        for i in range(n):
            await send(msg("data", i, destination="sink"))
        self.sent += n
        reply = await self.dispatcher.request(msg("done", None, destination="sink"))
        sender = time.process_time() - start
        _check_fence("dispatchio one-way", n, reply.content["count"], reply.content["in_order"])
        child_cpu = float(reply.content["cpu_s"])
        if self._child_cpu is not None:
            self.cpu.append((sender * 1e6 / n, (child_cpu - self._child_cpu) * 1e6 / n))
        self._child_cpu = child_cpu

    def cpu_note(self, label: str) -> str | None:
        """What `cpu` says, as a note on the row ``label`` (None before two calls)."""
        if not self.cpu:
            return None
        sender = statistics.median(s for s, _ in self.cpu)
        receiver = statistics.median(r for _, r in self.cpu)
        return (
            f"{label.split('.')[0]}: CPU per message, median of {len(self.cpu)} repeats:"
            f" sender {sender:.2f} µs, receiver {receiver:.2f} µs"
        )


def dispatchio_tcp(cfg: Config, backend: str, *, profile: str | None = None) -> dict[str, Stats]:
    """dispatchio over ``tcp://`` alone, run in this thread (to profile it).

    Returns the p50 (µs) and one-way (msg/s) samples. With ``profile`` (a path prefix)
    the parent and the child write cProfile stats to ``<profile>.parent`` and
    ``<profile>.child``.
    """
    import anyio

    cfg = _cfg(cfg)
    env = None if profile is None else {"BENCH_TCP_CHILD_PROFILE": f"{profile}.child"}

    async def main(url: str) -> dict[str, Stats]:
        async with dio_session(url) as side:
            p50s = [(await _async_repeat(side.round_trip, _scaled(N_SEQ, cfg)))[0]]
            rates = []
            for _ in range(cfg.repeats):
                t0 = time.perf_counter_ns()
                n = _scaled(N_ONEWAY_DIO, cfg)
                await side.one_way(n)
                rates.append(n * 1e9 / (time.perf_counter_ns() - t0))
        return {"p50": Stats(tuple(p50s)), "one_way": Stats(tuple(rates))}

    with child("dio", backend, env=env) as proc:
        url: str = proc.info["url"]
        if profile is None:
            result: dict[str, Stats] = anyio.run(main, url, backend=backend)
            return result
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(lambda: anyio.run(main, url, backend=backend))
        profiler.dump_stats(f"{profile}.parent")
        return result


# --------------------------------------------------------------------------- the section

T1 = "T1. request p50 over TCP, asyncio"
T2 = "T2. 32 concurrent requesters over TCP, asyncio"
T3 = "T3. one-way send over TCP, asyncio, none lost"
TARGETS: dict[str, tuple[Kind, float | None]] = {
    T1: ("max", 1.5),
    T2: ("min", 0.3),
    T3: ("min", 1.0),
}
ONE_WAY_FLOOR = 300_000.0
T1C = "T1c. request p50 over TCP, trio"
T3C = "T3c. one-way send over TCP, trio"


@dataclass
class Section:
    """What `measure` found: the peers' figures and dispatchio's rows."""

    peers: dict[str, PeerResult] = dataclasses.field(default_factory=dict)
    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def _row(
    label: str,
    value: Stats,
    unit: Unit,
    peer_label: str,
    peer: Stats | None,
    gate: tuple[Kind, float | None] | None = None,
) -> Row:
    kind: Kind = "info"
    target: float | None = None
    if gate is not None:
        kind, target = gate
    return Row(
        label, value.median, unit, peer_label, None if peer is None else peer.median, kind,
        target, spread=value.spread, pairs=None if peer is None else paired(value, peer),
    )  # fmt: skip


def measure(cfg: Config, log: Callable[[str], None], *, with_dispatchio: bool) -> Section:
    """Raw asyncio, pyzmq and dispatchio-tcp (asyncio, then trio), interleaved.

    A peer or a dispatchio set-up that fails becomes an ERROR entry; the rest goes on.
    """
    import importlib.util

    cfg = _cfg(cfg)
    found = Section()
    errors: dict[str, str] = {}
    if with_dispatchio and importlib.util.find_spec("dispatchio_tcp") is None:
        with_dispatchio = False
        found.notes.append(
            "dispatchio-tcp is NOT installed (pip install -e packages/dispatchio-tcp):"
            " only the peers were measured."
        )
    elif not with_dispatchio:
        found.notes.append("dispatchio is NOT importable: only the peers were measured.")

    def failed(keys: Sequence[str], exc: BaseException) -> None:
        import traceback

        traceback.print_exc(file=sys.stderr)
        errors.update(dict.fromkeys(keys, f"{type(exc).__name__}: {exc}"[:200]))

    def label(key: str) -> str:
        return PEERS[key][0]

    with contextlib.ExitStack() as stack:
        asyncio_loop = stack.enter_context(event_loop("asyncio"))
        raw: RawSide | None = None
        zmq: ZmqSide | None = None
        log("tcp peer: raw asyncio streams")
        try:
            raw = stack.enter_context(raw_side(asyncio_loop))
        except Exception as exc:  # report, don't crash: a missing peer is not fatal
            failed([k for k in PEERS if k.startswith("raw_")], exc)
        log("tcp peer: pyzmq")
        try:
            zmq = stack.enter_context(zmq_side())
        except Exception as exc:
            failed([k for k in PEERS if k.startswith("zmq_")], exc)

        for backend in ("asyncio", "trio"):
            gated = backend == "asyncio"
            labels = list(TARGETS) if gated else [T1C, T3C]
            if not gated and importlib.util.find_spec("trio") is None:
                skipped = "trio is not installed (pip install trio)"
                found.rows += [Row(t, None, US, skipped=skipped) for t in labels]
                continue
            if not with_dispatchio and not gated:
                continue  # the peers were measured on the asyncio pass
            rows: list[Row] = []
            try:
                with contextlib.ExitStack() as per_backend:
                    dio: DioSide | None = None
                    portal: BlockingPortal | None = None
                    if with_dispatchio:
                        log(f"dispatchio over TCP: {backend}")
                        portal = asyncio_loop
                        if not gated:
                            portal = per_backend.enter_context(event_loop(backend))
                        try:
                            dio = per_backend.enter_context(dio_side(portal, backend))
                        except Exception as exc:  # the peers are still worth measuring
                            failed([], exc)
                            rows = _error_rows(labels, exc)
                    if dio is not None or gated:
                        rows += _measure_backend(
                            cfg, gated, asyncio_loop, portal, dio, raw, zmq, found, label
                        )
            except Exception as exc:  # one broken benchmark must not hide the others
                failed([], exc)
                rows = _error_rows(labels, exc)
            found.rows += rows
    for key, (peer_label, unit, ref) in PEERS.items():
        if key not in found.peers:
            error = errors.get(key, "not measured")
            found.peers[key] = PeerResult(key, peer_label, None, unit, ref, error=error)
    return found


def _error_rows(labels: Sequence[str], exc: BaseException) -> list[Row]:
    text = f"{type(exc).__name__}: {exc}"[:200]
    rows = []
    for t in labels:
        kind, target = TARGETS.get(t, ("info", None))
        rows.append(Row(t, None, RTS, kind=kind, target=target, error=text))
    return rows


def _measure_backend(
    cfg: Config,
    gated: bool,
    asyncio_loop: BlockingPortal,
    portal: BlockingPortal | None,
    dio: DioSide | None,
    raw: RawSide | None,
    zmq: ZmqSide | None,
    found: Section,
    label: Callable[[str], str],
) -> list[Row]:
    """Latency, concurrency and one-way groups on one backend, each interleaved."""
    n_seq = _scaled(N_SEQ, cfg)
    latency: dict[str, Latency] = {}
    if dio is not None and portal is not None:
        latency["dio"] = async_latency(portal, dio.round_trip, n_seq)
    if raw is not None:
        latency["raw"] = async_latency(asyncio_loop, raw.round_trip, n_seq)
    if zmq is not None and gated:
        round_trip = zmq.round_trip
        latency["zmq"] = Latency(lambda: _sync_repeat(round_trip, n_seq))
    p50 = interleave(latency, cfg)
    rates = {k: sampler.rates(cfg.repeats) for k, sampler in latency.items()}

    concurrent: dict[str, Stats] = {}
    if gated:
        n_conc = _scaled(N_CONC, cfg) // CONCURRENCY * CONCURRENCY
        conc_samplers: dict[str, Sampler] = {}
        if dio is not None and portal is not None:
            conc_samplers["dio"] = async_sampler(portal, dio.concurrent, n_conc)
        if raw is not None:
            conc_samplers["raw"] = async_sampler(asyncio_loop, raw.concurrent, n_conc)
        concurrent = interleave(conc_samplers, cfg)

    one_way_samplers: dict[str, Sampler] = {}
    if dio is not None and portal is not None:
        one_way_samplers["dio"] = async_sampler(portal, dio.one_way, _scaled(N_ONEWAY_DIO, cfg))
    if raw is not None and gated:
        n_raw = _scaled(N_ONEWAY_RAW, cfg)
        one_way_samplers["raw"] = async_sampler(asyncio_loop, raw.one_way, n_raw)
    if zmq is not None:
        one_way_samplers["zmq"] = sync_sampler(zmq.one_way, _scaled(N_ONEWAY_ZMQ, cfg))
    one_way = interleave(one_way_samplers, cfg)

    if gated:
        figures = {
            "raw_p50": p50.get("raw"), "raw_seq": rates.get("raw"),
            "raw_32": concurrent.get("raw"), "raw_oneway": one_way.get("raw"),
            "zmq_p50": p50.get("zmq"), "zmq_seq": rates.get("zmq"),
            "zmq_oneway": one_way.get("zmq"),
        }  # fmt: skip
        for key, stats in figures.items():
            if stats is not None:
                peer_label, unit, ref = PEERS[key]
                found.peers[key] = PeerResult(
                    key, peer_label, stats.median, unit, ref, spread=stats.spread,
                    note=NOTES.get(key, ""),
                )  # fmt: skip
    if dio is None:
        return []
    cpu_note = dio.one_way.cpu_note(T3 if gated else T3C)
    if cpu_note is not None:
        found.notes.append(cpu_note)
    if not gated:
        return [
            _row(T1C, p50["dio"], US, label("raw_p50"), p50.get("raw")),
            _row(T3C, one_way["dio"], MSGS, label("zmq_oneway"), one_way.get("zmq")),
        ]
    kind, target = TARGETS[T3]
    t3 = Row(T3, one_way["dio"].median, MSGS, "absolute floor", ONE_WAY_FLOOR, kind, target,
             spread=one_way["dio"].spread)  # fmt: skip
    return [
        _row(T1, p50["dio"], US, label("raw_p50"), p50.get("raw"), TARGETS[T1]),
        _row("T1b. request, sequential rate, asyncio", rates["dio"], RTS, label("raw_seq"),
             rates.get("raw")),
        _row(T2, concurrent["dio"], RTS, label("raw_32"), concurrent.get("raw"), TARGETS[T2]),
        t3,
        _row("T3b. (same, beside pyzmq PUSH/PULL)", one_way["dio"], MSGS, label("zmq_oneway"),
             one_way.get("zmq")),
    ]  # fmt: skip
