"""The HTTP gateway beside raw aiohttp, between two OS processes on loopback.

Both servers run in a child process (``bench_gateway.py --serve raw|gateway``, which
prints its port); the client is this process, one aiohttp keep-alive connection, one
JSON POST at a time:

* raw aiohttp: ``POST /echo`` whose handler parses the JSON body and answers JSON;
* the gateway: ``POST /v1/messages?wait=5`` to a listener whose rule returns the
  content, answered with the reply message as JSON.

Target: the gateway's round trips/s at least 0.7x raw aiohttp's, measured in this run.
``measure(cfg, log)`` returns the rows for ``run.py``; run alone:
``python benchmarks/bench_gateway.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from _harness import Config, Row, render_rows
from bench_tcp import RoundTrips, _cpus, async_round_trips, pinned

HERE = Path(__file__).resolve()
NUMBER = 3000
TARGET = 0.7


@dataclass(frozen=True)
class Server:
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used (Linux only; else NaN)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(kind: str) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "--serve", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        cpus = _cpus()  # the same placement as the TCP section: the server on the other CPU
        if cpus is not None:
            os.sched_setaffinity(proc.pid, {cpus[1]})
        line = cast("IO[bytes]", proc.stdout).readline()
        if not line:
            raise RuntimeError(f"the {kind} server exited with code {proc.wait(10)}")
        yield Server(int(line), proc.pid)
    finally:
        with contextlib.suppress(OSError):
            cast("IO[bytes]", proc.stdin).close()  # the stop signal
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _client(url: str, body: Callable[[int], object], number: int, cfg: Config) -> RoundTrips:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:

        async def one(i: int) -> bytes:
            async with session.post(url, json=body(i)) as response:
                data = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}: {data[:200]!r}")
                return data

        return await async_round_trips(one, number, cfg)


def measure(cfg: Config, log: Callable[[str], None]) -> list[Row]:
    """Raw aiohttp, then the gateway, each against a server in a child process."""
    number = max(200, int(NUMBER * cfg.async_scale))
    requests = max(1, number // 4) * cfg.warmup + number * cfg.repeats
    results: dict[str, RoundTrips] = {}
    cpu: dict[str, float] = {}
    cases: dict[str, tuple[str, Callable[[int], object]]] = {
        "raw": ("/echo", lambda i: {"content": i}),
        "gateway": (
            "/v1/messages?wait=5",
            lambda i: {"type": "echo", "destination": "echo", "content": i},
        ),
    }
    with pinned():
        for kind, (path, body) in cases.items():
            log(f"{kind}: {path}")
            with _server(kind) as server:
                url = f"http://127.0.0.1:{server.port}{path}"
                before = server.cpu_seconds()
                results[kind] = asyncio.run(_client(url, body, number, cfg))
                cpu[kind] = (server.cpu_seconds() - before) * 1e6 / requests
    raw, gateway = results["raw"], results["gateway"]
    return [
        Row(
            "gateway POST /v1/messages?wait= (1 connection)",
            gateway.rate.median,
            "rt/s",
            "raw aiohttp JSON POST",
            raw.rate.median,
            kind="min",
            target=TARGET,
            spread=gateway.rate.spread,
        ),
        Row("  the same, p50", gateway.p50.median, "µs", "raw aiohttp p50", raw.p50.median),
        Row(
            "  server CPU per request",
            None if math.isnan(cpu["gateway"]) else cpu["gateway"],
            "µs",
            "raw aiohttp server",
            None if math.isnan(cpu["raw"]) else cpu["raw"],
        ),
    ]


# --------------------------------------------------------------------------- the servers


async def _serve(kind: str) -> None:
    from aiohttp import web

    app = web.Application()
    dispatcher = None
    if kind == "raw":

        async def echo(request: web.Request) -> web.Response:
            data = await request.json()
            return web.json_response({"content": data["content"]})

        app.router.add_post("/echo", echo)
    else:
        from dispatchio import BasicMessageListener, MessageDispatcher
        from dispatchio_http import HttpOptions
        from dispatchio_http._gateway import install_gateway

        dispatcher = MessageDispatcher("bench")
        listener = BasicMessageListener("echo")
        listener.add_rule(callback=lambda m: m.content)
        dispatcher.register(listener)
        install_gateway(app, prefix="", dispatcher=dispatcher, options=HttpOptions())
    async with contextlib.AsyncExitStack() as stack:
        if dispatcher is not None:
            await stack.enter_async_context(dispatcher)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.buffer.read)  # until the parent closes it


def main() -> None:
    parser = argparse.ArgumentParser(description="gateway vs raw aiohttp")
    parser.add_argument("--serve", choices=["raw", "gateway"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    cfg = Config.quick() if args.quick else Config()
    rows = measure(cfg, lambda text: print(f"  .. {text}", file=sys.stderr, flush=True))
    print(render_rows(rows))


if __name__ == "__main__":
    main()
