"""Cross-process benchmarks over HTTP on loopback: dispatchio-http beside raw aiohttp.

Every figure is measured between this process and a child (`_http_child.py`), pinned to
two CPUs as in the TCP section (`bench_tcp.pinned`), with its timing helpers: both
children stay up for the whole section, each side's connections live in one asyncio
loop in a helper thread (`_harness.event_loop`), and dispatchio's repeats alternate
with raw aiohttp's (`_harness.interleave`), a row's ratio being the median of the
per-round ratios.

* The peer: a raw aiohttp client POSTing a small JSON message to a raw aiohttp server
  that parses it and answers it as JSON, on one keep-alive connection (p50 and
  sequential rate), and on 32 connections from 32 tasks.
* dispatchio: ``request`` over ``http://`` to the child's echo listener (p50, sequential
  rate, 32 concurrent requesters), and one-way ``send`` to its sink, in order and none
  lost (checked by the child), printed beside the floor and beside this run's TCP
  figure.

All imports of aiohttp, anyio and dispatchio are lazy.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from _harness import (
    Config,
    PeerResult,
    Row,
    Sampler,
    Stats,
    async_sampler,
    event_loop,
    interleave,
    render_peers,
    render_rows,
)
from bench_tcp import (
    CONCURRENCY,
    MSGS,
    N_CONC,
    N_ONEWAY_DIO,
    N_SEQ,
    RTS,
    T3,
    US,
    DioSide,
    Latency,
    _cfg,
    _cpus,
    _row,
    _scaled,
    async_latency,
    dio_session,
    pinned,
)

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

CHILD = Path(__file__).with_name("_http_child.py")

H1 = "H1. request over HTTP, sequential rate, asyncio"
H2 = "H2. one-way send over HTTP, asyncio, none lost"
N_HTTP_TARGETS = 3  # H1, H2 and bench_gateway's G1
ONE_WAY_FLOOR = 50_000.0
PEERS = {
    "aiohttp_p50": ("raw aiohttp JSON POST, keep-alive, p50", US, 256.0),
    "aiohttp_seq": ("raw aiohttp JSON POST, keep-alive, sequential", RTS, 3_850.0),
    "aiohttp_32": ("raw aiohttp JSON POST, 32 connections", RTS, 11_700.0),
}


@contextlib.contextmanager
def child(mode: str) -> Iterator[tuple[dict[str, Any], Callable[[str], dict[str, Any]]]]:
    """Run ``_http_child.py mode`` on the other CPU; yield its ready line and a command."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    stdin, stdout = cast("IO[str]", proc.stdin), cast("IO[str]", proc.stdout)
    cpus = _cpus()
    if cpus is not None:
        os.sched_setaffinity(proc.pid, {cpus[1]})

    def read() -> dict[str, Any]:
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark child {mode} exited with code {proc.wait(10)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(line: str) -> dict[str, Any]:
        stdin.write(line + "\n")
        stdin.flush()
        return read()

    try:
        yield read(), command
    finally:
        with contextlib.suppress(OSError):
            stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stdout.close()


# --------------------------------------------------------------------------- the sides


@dataclass(frozen=True)
class RawSide:
    """Raw aiohttp clients of the raw child: one keep-alive connection, and 32."""

    round_trip: Callable[[int], Awaitable[object]]
    concurrent: Callable[[int], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_clients(url: str) -> AsyncIterator[RawSide]:
    import asyncio

    import aiohttp

    def poster(session: aiohttp.ClientSession) -> Callable[[int], Awaitable[object]]:
        post = session.post

        async def round_trip(i: int) -> object:
            async with post(url, json={"type": "ping", "content": i, "destination": "echo"}) as r:
                return (await r.json())["content"]

        return round_trip

    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as many,
    ):
        first = poster(one)
        if await first(7) != 7:
            raise RuntimeError("the raw aiohttp child answered something else")
        shared = poster(many)

        async def concurrent(n: int) -> None:
            per = max(1, n // CONCURRENCY)

            async def run() -> None:
                for i in range(per):
                    await shared(i)

            await asyncio.gather(*(run() for _ in range(CONCURRENCY)))

        yield RawSide(first, concurrent)


@contextlib.contextmanager
def raw_side(portal: BlockingPortal) -> Iterator[RawSide]:
    with (
        child("raw") as (info, _),
        portal.wrap_async_context_manager(raw_clients(info["url"])) as side,
    ):
        yield side


@contextlib.contextmanager
def dio_side(portal: BlockingPortal) -> Iterator[DioSide]:
    """A dispatcher joined over http:// to the ``dio`` child; checks the sink on leaving."""
    with child("dio") as (info, command):
        with portal.wrap_async_context_manager(dio_session(info["url"])) as side:
            yield side
        report = command("report")
    if report.get("count") != side.one_way.sent or not report.get("in_order"):
        raise RuntimeError(f"the child's sink reports {report}, but {side.one_way.sent} were sent")


# --------------------------------------------------------------------------- the section


def measure(
    cfg: Config, log: Callable[[str], None], *, with_dispatchio: bool, tcp_one_way: float | None
) -> tuple[dict[str, PeerResult], list[Row], list[str]]:
    """Raw aiohttp and dispatchio-http, interleaved: (peers, rows, notes)."""
    import importlib.util

    cfg = _cfg(cfg)
    notes: list[str] = []
    if with_dispatchio and importlib.util.find_spec("dispatchio_http") is None:
        with_dispatchio = False
        notes.append("dispatchio-http is NOT installed (pip install -e packages/dispatchio-http).")
    peers: dict[str, PeerResult] = {}
    rows: list[Row] = []
    errors: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        loop = stack.enter_context(event_loop("asyncio"))
        raw: RawSide | None = None
        dio: DioSide | None = None
        log("http peer: raw aiohttp")
        try:
            raw = stack.enter_context(raw_side(loop))
        except Exception as exc:  # report, don't crash: a missing peer is not fatal
            errors.update(dict.fromkeys(PEERS, _text(exc)))
        if with_dispatchio:
            log("dispatchio over HTTP: asyncio")
            try:
                dio = stack.enter_context(dio_side(loop))
            except Exception as exc:  # the peer is still worth measuring
                rows = _error_rows(exc)
        n_seq = _scaled(N_SEQ, cfg)
        latency: dict[str, Latency] = {}
        conc: dict[str, Sampler] = {}
        n_conc = _scaled(N_CONC, cfg) // CONCURRENCY * CONCURRENCY
        for key, side in (("dio", dio), ("raw", raw)):
            if side is not None:
                latency[key] = async_latency(loop, side.round_trip, n_seq)
                conc[key] = async_sampler(loop, side.concurrent, n_conc)
        p50 = interleave(latency, cfg)
        rates = {key: sampler.rates(cfg.repeats) for key, sampler in latency.items()}
        concurrent = interleave(conc, cfg)
        one_way: dict[str, Stats] = {}
        if dio is not None:
            sampler = async_sampler(loop, dio.one_way, _scaled(N_ONEWAY_DIO, cfg))
            one_way = interleave({"dio": sampler}, cfg)
    figures = {"aiohttp_p50": p50.get("raw"), "aiohttp_seq": rates.get("raw"),
               "aiohttp_32": concurrent.get("raw")}  # fmt: skip
    for key, (name, unit, ref) in PEERS.items():
        stats = figures.get(key)
        if stats is None:
            peers[key] = PeerResult(key, name, None, unit, ref, error=errors.get(key, "?"))
        else:
            peers[key] = PeerResult(key, name, stats.median, unit, ref, spread=stats.spread)
    if dio is None:
        return peers, rows, notes

    def label(key: str) -> str:
        return PEERS[key][0]

    rows = [
        _row(H1, rates["dio"], RTS, label("aiohttp_seq"), rates.get("raw"), ("min", 0.8)),
        _row("H1b. request p50 over HTTP, asyncio", p50["dio"], US, label("aiohttp_p50"),
             p50.get("raw")),
        _row("H1c. 32 concurrent requesters over HTTP", concurrent["dio"], RTS,
             label("aiohttp_32"), concurrent.get("raw")),
        Row(H2, one_way["dio"].median, MSGS, "absolute floor", ONE_WAY_FLOOR, "min", 1.0,
            spread=one_way["dio"].spread),
        Row("H2b. (same, beside the TCP one-way of this run)", one_way["dio"].median, MSGS,
            "dispatchio over TCP (T3)", tcp_one_way),
    ]  # fmt: skip
    return peers, rows, notes


def _text(exc: BaseException) -> str:
    import traceback

    traceback.print_exc(file=sys.stderr)
    return f"{type(exc).__name__}: {exc}"[:200]


def _error_rows(exc: BaseException) -> list[Row]:
    text = _text(exc)
    return [
        Row(H1, None, RTS, kind="min", target=0.8, error=text),
        Row(H2, None, MSGS, kind="min", target=1.0, error=text),
    ]


def section(
    cfg: Config, log: Callable[[str], None], *, have_core: bool, tcp_rows: list[Row]
) -> list[Row]:
    """The HTTP section of ``run.py``: print the peer and dispatchio tables, return rows."""
    import importlib.util
    import time

    started = time.perf_counter()
    tcp_one_way = next((r.value for r in tcp_rows if r.label == T3), None)
    print()
    with pinned() as placement:
        print("Between two OS processes over HTTP on 127.0.0.1 (peers measured in this run)")
        print(f"CPU placement: {placement}")
        sys.stdout.flush()
        peers, rows, notes = measure(cfg, log, with_dispatchio=have_core, tcp_one_way=tcp_one_way)
    print(render_peers(list(peers.values())))
    print()
    for note in notes:
        print(note)
    if rows:
        print(render_rows(rows))
    if have_core and importlib.util.find_spec("dispatchio_http") is not None:
        gateway_rows = _gateway_rows(cfg, log)
        print()
        print("The gateway beside raw aiohttp (both servers in child processes)")
        print(render_rows(gateway_rows))
        rows = [*rows, *gateway_rows]
    print(f"(HTTP section: {time.perf_counter() - started:.1f} s)")
    return rows


def _gateway_rows(cfg: Config, log: Callable[[str], None]) -> list[Row]:
    """bench_gateway's rows (G1 gated), or G1 as an error row when it fails."""
    import bench_gateway

    try:
        return bench_gateway.measure(cfg, log)
    except Exception as exc:  # a failed benchmark is reported as a row, the run goes on
        return [
            Row(
                bench_gateway.G1,
                None,
                RTS,
                kind="min",
                target=bench_gateway.TARGET,
                error=_text(exc),
            )
        ]
