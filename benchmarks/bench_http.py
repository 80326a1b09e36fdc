"""Cross-process benchmarks over HTTP on loopback: dispatchio-http beside raw aiohttp.

Every figure is measured between this process and a child (`_http_child.py`), pinned
to two CPUs as in the TCP section (`bench_tcp.pinned`), with the same timing helpers:

* The peer: a raw aiohttp client POSTing a small JSON message to a raw aiohttp server
  that parses it and answers it as JSON, on one keep-alive connection (p50 and
  sequential rate), and on 32 connections from 32 tasks.
* dispatchio: ``request`` over ``http://`` to the child's echo listener (p50, sequential
  rate, 32 concurrent requesters), and one-way ``send`` to its sink, in order and none
  lost (checked by the child), printed beside the floor and beside the TCP figure of
  this run.

All imports of aiohttp, anyio and dispatchio are lazy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from _harness import Config, PeerResult, Row, Stats, bench_rate, render_peers, render_rows
from bench_tcp import (
    CONCURRENCY,
    MSGS,
    N_CONC,
    N_ONEWAY_DIO,
    N_SEQ,
    RTS,
    T3,
    US,
    OneWay,
    RoundTrips,
    _cfg,
    _concurrent_loop,
    _cpus,
    _scaled,
    async_round_trips,
    pinned,
)

CHILD = Path(__file__).with_name("_http_child.py")

H1 = "H1. request over HTTP, sequential rate, asyncio"
H2 = "H2. one-way send over HTTP, asyncio, none lost"
N_HTTP_TARGETS = 2
ONE_WAY_FLOOR = 50_000.0


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


# --------------------------------------------------------------------------- the peer


@dataclass(frozen=True)
class RawResult:
    sequential: RoundTrips
    concurrent: Stats


def raw_aiohttp(cfg: Config) -> RawResult:
    """Raw aiohttp JSON POSTs to the child's echo: one keep-alive connection, then 32."""
    cfg = _cfg(cfg)
    with child("raw") as (info, _):
        return asyncio.run(_raw_main(info["url"], cfg))


async def _raw_main(url: str, cfg: Config) -> RawResult:
    import aiohttp

    def poster(session: aiohttp.ClientSession) -> Callable[[int], Any]:
        post = session.post

        async def round_trip(i: int) -> Any:
            async with post(url, json={"type": "ping", "content": i, "destination": "echo"}) as r:
                return (await r.json())["content"]

        return round_trip

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one:
        first = poster(one)
        if await first(7) != 7:
            raise RuntimeError("the raw aiohttp child answered something else")
        sequential = await async_round_trips(first, _scaled(N_SEQ, cfg), cfg)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as many:
        shared = poster(many)

        async def concurrent(n: int) -> None:
            per = max(1, n // CONCURRENCY)

            async def run() -> None:
                for i in range(per):
                    await shared(i)

            await asyncio.gather(*(run() for _ in range(CONCURRENCY)))

        count = _scaled(N_CONC, cfg) // CONCURRENCY * CONCURRENCY
        conc = await bench_rate(concurrent, count, cfg)
    return RawResult(sequential, conc)


PEERS = {
    "aiohttp_p50": ("raw aiohttp JSON POST, keep-alive, p50", US, 256.0),
    "aiohttp_seq": ("raw aiohttp JSON POST, keep-alive, sequential", RTS, 3_850.0),
    "aiohttp_32": ("raw aiohttp JSON POST, 32 connections", RTS, 11_700.0),
}


def measure_peers(cfg: Config, log: Callable[[str], None]) -> dict[str, PeerResult]:
    log("http peer: raw aiohttp")
    try:
        r = raw_aiohttp(cfg)
    except Exception as exc:  # report, don't crash: a missing peer is not fatal
        text = f"{type(exc).__name__}: {exc}"[:200]
        return {
            k: PeerResult(k, lab, None, u, ref, error=text) for k, (lab, u, ref) in PEERS.items()
        }
    values = {
        "aiohttp_p50": r.sequential.p50,
        "aiohttp_seq": r.sequential.rate,
        "aiohttp_32": r.concurrent,
    }
    return {
        key: PeerResult(key, label, values[key].median, unit, ref, spread=values[key].spread)
        for key, (label, unit, ref) in PEERS.items()
    }  # fmt: skip


# --------------------------------------------------------------------------- dispatchio


@dataclass(frozen=True)
class DioResult:
    sequential: RoundTrips
    concurrent: Stats
    one_way: Stats


def dispatchio_http(cfg: Config) -> DioResult:
    """dispatchio over ``http://`` to a child dispatcher (asyncio)."""
    import anyio

    cfg = _cfg(cfg)
    with child("dio") as (info, command):
        result, sent = anyio.run(_dio_main, info["url"], cfg, backend="asyncio")
        report = command("report")
    if report.get("count") != sent or not report.get("in_order"):
        raise RuntimeError(f"the child's sink reports {report}, but {sent} were sent")
    return result


async def _dio_main(url: str, cfg: Config) -> tuple[DioResult, int]:
    from dispatchio import Message, MessageDispatcher

    dispatcher = MessageDispatcher("bench-parent", connect=[url], reply_timeout=60.0)
    async with dispatcher:
        await dispatcher.wait_for_listener("echo", timeout=10)
        await dispatcher.wait_for_listener("sink", timeout=10)
        request = dispatcher.request

        async def round_trip(i: int) -> Message:
            return await request(Message("ping", i, destination="echo"))

        if (await round_trip(7)).content != 7:
            raise RuntimeError("the dispatchio child answered something else")
        sequential = await async_round_trips(round_trip, _scaled(N_SEQ, cfg), cfg)
        count = _scaled(N_CONC, cfg) // CONCURRENCY * CONCURRENCY
        conc = await bench_rate(_concurrent_loop(round_trip), count, cfg)
        one_way = OneWay(dispatcher)
        oneway = await bench_rate(one_way, _scaled(N_ONEWAY_DIO, cfg), cfg)
        return DioResult(sequential, conc, oneway), one_way.sent


def measure_dispatchio(
    cfg: Config, peers: dict[str, PeerResult], tcp_one_way: float | None, log: Callable[[str], None]
) -> list[Row]:
    def peer(key: str) -> tuple[str, float | None]:
        p = peers.get(key)
        return ("?", None) if p is None else (p.label, p.value)

    log("dispatchio over HTTP: asyncio")
    try:
        d = dispatchio_http(cfg)
    except Exception as exc:  # one broken benchmark must not hide the others
        import traceback

        traceback.print_exc(file=sys.stderr)
        text = f"{type(exc).__name__}: {exc}"[:200]
        return [
            Row(H1, None, RTS, kind="min", target=0.8, error=text),
            Row(H2, None, MSGS, kind="min", target=1.0, error=text),
        ]
    tcp = ("dispatchio over TCP, this run (T3)", tcp_one_way)
    return [
        Row(H1, d.sequential.rate.median, RTS, *peer("aiohttp_seq"), "min", 0.8,
            spread=d.sequential.rate.spread),
        Row("H1b. request p50 over HTTP, asyncio", d.sequential.p50.median, US,
            *peer("aiohttp_p50"), spread=d.sequential.p50.spread),
        Row("H1c. 32 concurrent requesters over HTTP", d.concurrent.median, RTS,
            *peer("aiohttp_32"), spread=d.concurrent.spread),
        Row(H2, d.one_way.median, MSGS, "absolute floor", ONE_WAY_FLOOR, "min", 1.0,
            spread=d.one_way.spread),
        Row("H2b. (same, beside the TCP one-way)", d.one_way.median, MSGS, *tcp),
    ]  # fmt: skip


def section(
    cfg: Config, log: Callable[[str], None], *, have_core: bool, tcp_rows: list[Row]
) -> list[Row]:
    """The HTTP section of ``run.py``: print the peer and dispatchio tables, return rows."""
    rows: list[Row] = []
    tcp_one_way = next((r.value for r in tcp_rows if r.label == T3), None)
    with pinned() as placement:
        print()
        print("Between two OS processes over HTTP on 127.0.0.1 (peers measured in this run)")
        print(f"CPU placement: {placement}")
        peers = measure_peers(cfg, log)
        print(render_peers(list(peers.values())))
        print()
        try:
            import dispatchio_http
        except Exception as exc:
            print(f"dispatchio-http is NOT importable ({type(exc).__name__}: {exc}).")
            print("Install it (pip install -e packages/dispatchio-http).")
        else:
            if have_core:
                print(f"dispatchio-http from {dispatchio_http.__file__}")
                rows = measure_dispatchio(cfg, peers, tcp_one_way, log)
                print(render_rows(rows))
    return rows
