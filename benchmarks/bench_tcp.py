"""Cross-process benchmarks over TCP on loopback: dispatchio-tcp beside its peers.

Every figure is measured between two real OS processes: this one and a child
(`_tcp_child.py`) started here and stopped at the end. Peers: raw asyncio streams
(length-prefixed ~100-byte frames) and pyzmq; then dispatchio with the ``tcp://``
transport, on asyncio (the targets) and trio (reported beside).

* Latency: every round trip is timed; a repeat's figure is its p50, and the row is the
  median of the repeats' p50s. The sequential rate comes from the same repeats.
* Throughput: operations per second of a whole repeat (`_harness.bench_rate`).
* One-way: the sender sends ``n`` messages, then a fence; the receiver answers the fence
  with how many it got and whether they came in order, and the repeat counts only when
  all ``n`` arrived in order. The clock stops when the fence's answer is back.

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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from _harness import Config, PeerResult, Row, Stats, Unit, bench_rate, sync_rate

if TYPE_CHECKING:
    from dispatchio import MessageDispatcher

CHILD = Path(__file__).with_name("_tcp_child.py")

US: Unit = "µs"
MSGS: Unit = "msg/s"
RTS: Unit = "rt/s"

CONCURRENCY = 32
PAYLOAD = 100  # bytes after the 4-byte length prefix
BATCH = 64  # raw one-way: frames per write
YIELD_EVERY = 64  # dispatchio one-way: sends between checkpoints (see one_way_loop)

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


@dataclass(frozen=True)
class RoundTrips:
    """Sequential round trips: p50 latency (µs) and rate (rt/s), one sample per repeat."""

    p50: Stats
    rate: Stats


def _p50_us(durations: list[int]) -> float:
    return statistics.median(durations) / 1000


async def async_round_trips(
    one: Callable[[int], Awaitable[object]], number: int, cfg: Config
) -> RoundTrips:
    """Time ``number`` sequential ``await one(i)``, each on its own, per repeat."""
    clock = time.perf_counter_ns
    for i in range(max(1, number // 4) * cfg.warmup):
        await one(i)
    p50s: list[float] = []
    rates: list[float] = []
    for _ in range(cfg.repeats):
        gc.collect()
        durations = [0] * number
        t0 = clock()
        for i in range(number):
            start = clock()
            await one(i)
            durations[i] = clock() - start
        rates.append(number * 1e9 / (clock() - t0))
        p50s.append(_p50_us(durations))
    return RoundTrips(Stats(tuple(p50s)), Stats(tuple(rates)))


def sync_round_trips(one: Callable[[int], object], number: int, cfg: Config) -> RoundTrips:
    """The blocking twin of `async_round_trips`."""
    clock = time.perf_counter_ns
    for i in range(max(1, number // 4) * cfg.warmup):
        one(i)
    p50s: list[float] = []
    rates: list[float] = []
    for _ in range(cfg.repeats):
        gc.collect()
        durations = [0] * number
        t0 = clock()
        for i in range(number):
            start = clock()
            one(i)
            durations[i] = clock() - start
        rates.append(number * 1e9 / (clock() - t0))
        p50s.append(_p50_us(durations))
    return RoundTrips(Stats(tuple(p50s)), Stats(tuple(rates)))


def _check_fence(kind: str, sent: int, count: int, in_order: bool) -> None:
    if count != sent or not in_order:
        raise RuntimeError(
            f"{kind}: the receiver got {count} of {sent} messages"
            + ("" if in_order else ", out of order")
        )


# --------------------------------------------------------------------------- peers: raw asyncio


@dataclass(frozen=True)
class RawResult:
    sequential: RoundTrips
    concurrent: Stats
    one_way: Stats


def raw_asyncio(cfg: Config) -> RawResult:
    """Raw asyncio streams to the child: echo (1 and 32 connections) and one-way."""
    cfg = _cfg(cfg)
    with child("raw") as proc:
        return asyncio.run(_raw_main(proc.info["echo"], proc.info["sink"], cfg))


async def _raw_main(echo_port: int, sink_port: int, cfg: Config) -> RawResult:
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
        sequential = await async_round_trips(first, _scaled(N_SEQ, cfg), cfg)

        clients = [echo_client(*link) for link in links]

        async def concurrent(n: int) -> None:
            per = max(1, n // CONCURRENCY)

            async def run(rt: Callable[[int], Awaitable[bytes]]) -> None:
                for i in range(per):
                    await rt(i)

            await asyncio.gather(*(run(rt) for rt in clients))

        conc = await bench_rate(concurrent, _scaled(N_CONC, cfg) // CONCURRENCY * CONCURRENCY, cfg)

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

        oneway = await bench_rate(one_way, _scaled(N_ONEWAY_RAW, cfg), cfg)
        return RawResult(sequential, conc, oneway)
    finally:
        for _, writer in [*links, (sink_reader, sink_writer)]:
            writer.close()


# --------------------------------------------------------------------------- peers: pyzmq


@dataclass(frozen=True)
class ZmqResult:
    sequential: RoundTrips
    one_way: Stats


def pyzmq(cfg: Config) -> ZmqResult:
    """pyzmq (blocking sockets) to the child: REQ/REP round trips, PUSH/PULL one-way."""
    import zmq

    cfg = _cfg(cfg)
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
            sequential = sync_round_trips(round_trip, _scaled(N_SEQ, cfg), cfg)

            def one_way(n: int) -> None:
                send = push.send
                pack = struct.Struct(">Q").pack
                filler = FILLER + b"xxxx"  # same 100-byte payload as the raw frames
                for i in range(n):
                    send(pack(i) + filler)
                send(b"")
                count, in_order = REPORT.unpack(ack.recv())
                _check_fence("pyzmq PUSH/PULL", n, count, bool(in_order))

            oneway = sync_rate(one_way, _scaled(N_ONEWAY_ZMQ, cfg), cfg)
            return ZmqResult(sequential, oneway)
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


def measure_peers(cfg: Config, log: Callable[[str], None]) -> dict[str, PeerResult]:
    """Raw asyncio and pyzmq between two processes; a failing peer becomes an ERROR row."""
    values: dict[str, Stats] = {}
    errors: dict[str, str] = {}
    for name, keys, fn in (
        ("raw asyncio streams", ("raw_p50", "raw_seq", "raw_32", "raw_oneway"), _raw_values),
        ("pyzmq", ("zmq_p50", "zmq_seq", "zmq_oneway"), _zmq_values),
    ):
        log(f"tcp peer: {name}")
        try:
            values.update(fn(cfg))
        except Exception as exc:  # report, don't crash: a missing peer is not fatal
            errors.update(dict.fromkeys(keys, f"{type(exc).__name__}: {exc}"[:200]))
    results: dict[str, PeerResult] = {}
    for key, (label, unit, ref) in PEERS.items():
        stats = values.get(key)
        if stats is None:
            results[key] = PeerResult(key, label, None, unit, ref, error=errors.get(key, "?"))
        else:
            results[key] = PeerResult(
                key, label, stats.median, unit, ref, spread=stats.spread, note=NOTES.get(key, "")
            )
    return results


def _raw_values(cfg: Config) -> dict[str, Stats]:
    r = raw_asyncio(cfg)
    return {
        "raw_p50": r.sequential.p50,
        "raw_seq": r.sequential.rate,
        "raw_32": r.concurrent,
        "raw_oneway": r.one_way,
    }


def _zmq_values(cfg: Config) -> dict[str, Stats]:
    z = pyzmq(cfg)
    return {"zmq_p50": z.sequential.p50, "zmq_seq": z.sequential.rate, "zmq_oneway": z.one_way}


# --------------------------------------------------------------------------- dispatchio


@dataclass(frozen=True)
class DioResult:
    sequential: RoundTrips
    concurrent: Stats | None
    one_way: Stats
    sent: int  # one-way messages sent in all (warm-up included)
    child_report: dict[str, Any]


def dispatchio_tcp(
    cfg: Config, backend: str, *, concurrent: bool = True, profile: str | None = None
) -> DioResult:
    """dispatchio over ``tcp://`` to a child dispatcher on the same ``backend``.

    With ``profile`` (a path prefix) the parent and the child write cProfile stats to
    ``<profile>.parent`` and ``<profile>.child``.
    """
    import anyio

    cfg = _cfg(cfg)
    env = None if profile is None else {"BENCH_TCP_CHILD_PROFILE": f"{profile}.child"}
    with child("dio", backend, env=env) as proc:
        url: str = proc.info["url"]

        async def main() -> DioResult:
            result = await _dio_main(url, cfg, concurrent)
            return dataclasses.replace(result, child_report=proc.command("report"))

        if profile is None:
            result: DioResult = anyio.run(main, backend=backend)
        else:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(lambda: anyio.run(main, backend=backend))
            profiler.dump_stats(f"{profile}.parent")
    report = result.child_report
    if report.get("count") != result.sent or not report.get("in_order"):
        raise RuntimeError(f"the child's sink reports {report}, but {result.sent} were sent")
    return result


async def _dio_main(url: str, cfg: Config, concurrent: bool) -> DioResult:
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
        sequential = await async_round_trips(round_trip, _scaled(N_SEQ, cfg), cfg)
        conc = None
        if concurrent:
            count = _scaled(N_CONC, cfg) // CONCURRENCY * CONCURRENCY
            conc = await bench_rate(_concurrent_loop(round_trip), count, cfg)
        one_way = OneWay(dispatcher)
        oneway = await bench_rate(one_way, _scaled(N_ONEWAY_DIO, cfg), cfg)
        return DioResult(sequential, conc, oneway, one_way.sent, {})


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

    `MessageDispatcher.send` to another process never suspends (the transport's outbox
    is bounded and its overflow is an error, not an await), so a producer that never
    awaits anything else must yield now and then for the writer task to run: here, a
    checkpoint every `YIELD_EVERY` sends.
    """

    def __init__(self, dispatcher: MessageDispatcher) -> None:
        self.dispatcher = dispatcher
        self.sent = 0

    async def __call__(self, n: int) -> None:
        import anyio.lowlevel

        from dispatchio import Message

        send = self.dispatcher.send
        checkpoint = anyio.lowlevel.checkpoint
        msg = Message
        for i in range(n):
            await send(msg("data", i, destination="sink"))
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await checkpoint()
        self.sent += n
        reply = await self.dispatcher.request(msg("done", None, destination="sink"))
        _check_fence("dispatchio one-way", n, reply.content["count"], reply.content["in_order"])


# --------------------------------------------------------------------------- dispatchio: rows

T1 = "T1. request p50 over TCP, asyncio"
T2 = "T2. 32 concurrent requesters over TCP, asyncio"
T3 = "T3. one-way send over TCP, asyncio, none lost"
TARGETS: dict[str, tuple[Any, float]] = {T1: ("max", 1.5), T2: ("min", 0.3), T3: ("min", 1.0)}
ONE_WAY_FLOOR = 150_000.0


def measure_dispatchio(
    cfg: Config, peers: dict[str, PeerResult], log: Callable[[str], None]
) -> list[Row]:
    """The TCP rows: asyncio (gated) and trio (info), each beside the peers of this run."""
    import importlib.util

    def peer(key: str) -> tuple[str, float | None]:
        p = peers.get(key)
        return ("?", None) if p is None else (p.label, p.value)

    rows: list[Row] = []
    raw_p50, raw_seq, raw_32 = peer("raw_p50"), peer("raw_seq"), peer("raw_32")
    zmq_oneway = peer("zmq_oneway")
    floor = ("absolute floor", ONE_WAY_FLOOR)

    log("dispatchio over TCP: asyncio")
    try:
        a = dispatchio_tcp(cfg, "asyncio")
    except Exception as exc:  # one broken benchmark must not hide the others
        import traceback

        traceback.print_exc(file=sys.stderr)
        text = f"{type(exc).__name__}: {exc}"[:200]
        for label, (kind, target) in TARGETS.items():
            rows.append(Row(label, None, RTS, kind=kind, target=target, error=text))
    else:
        conc = cast("Stats", a.concurrent)
        rows += [
            Row(T1, a.sequential.p50.median, US, *raw_p50, "max", 1.5,
                spread=a.sequential.p50.spread),
            Row("T1b. request, sequential rate, asyncio", a.sequential.rate.median, RTS,
                *raw_seq, spread=a.sequential.rate.spread),
            Row(T2, conc.median, RTS, *raw_32, "min", 0.3, spread=conc.spread),
            Row(T3, a.one_way.median, MSGS, *floor, "min", 1.0, spread=a.one_way.spread),
            Row("T3b. (same, beside pyzmq PUSH/PULL)", a.one_way.median, MSGS, *zmq_oneway),
        ]  # fmt: skip

    label_p50, label_oneway = "T1c. request p50 over TCP, trio", "T3c. one-way send over TCP, trio"
    if importlib.util.find_spec("trio") is None:
        skipped = "trio is not installed (pip install trio)"
        rows.append(Row(label_p50, None, US, *raw_p50, skipped=skipped))
        rows.append(Row(label_oneway, None, MSGS, *zmq_oneway, skipped=skipped))
        return rows
    log("dispatchio over TCP: trio")
    try:
        t = dispatchio_tcp(cfg, "trio", concurrent=False)
    except Exception as exc:
        import traceback

        traceback.print_exc(file=sys.stderr)
        text = f"{type(exc).__name__}: {exc}"[:200]
        rows.append(Row(label_p50, None, US, error=text))
        rows.append(Row(label_oneway, None, MSGS, error=text))
    else:
        rows += [
            Row(label_p50, t.sequential.p50.median, US, *raw_p50, spread=t.sequential.p50.spread),
            Row(label_oneway, t.one_way.median, MSGS, *zmq_oneway, spread=t.one_way.spread),
        ]
    return rows
