"""The HTTP gateway beside raw aiohttp, between two OS processes on loopback.

Both servers run in a child process (``bench_gateway.py --serve raw|gateway``, which
prints its port); the client is this process, one aiohttp keep-alive connection, one
JSON POST at a time:

* raw aiohttp: ``POST /echo`` whose handler parses the JSON body and answers JSON;
* the gateway: ``POST /v1/messages?wait=5`` to a listener whose rule returns the
  content, answered with the reply message as JSON, served by the dispatcher's own
  ``http://127.0.0.1:0`` listener (the HTTP transport, its guard in front).

Target: the gateway's round trips/s at least 0.7x raw aiohttp's, measured in this run.
``measure(cfg, log)`` returns the rows for ``run.py`` (its HTTP section, after
``bench_http``'s rows); run alone:
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
from typing import IO, Any, cast

from _harness import Config, Row, event_loop, interleave, paired, render_rows
from bench_tcp import Latency, _cpus, async_latency, pinned

HERE = Path(__file__).resolve()
NUMBER = 3000
TARGET = 0.7
G1 = "G1. gateway POST /v1/messages?wait=, 1 connection"


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


async def _session() -> Any:
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))


def _round_trip(session: Any, url: str, body: Callable[[int], object]) -> Callable[[int], Any]:
    async def one(i: int) -> bytes:
        async with session.post(url, json=body(i)) as response:
            data: bytes = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}: {data[:200]!r}")
            return data

    return one


def measure(cfg: Config, log: Callable[[str], None]) -> list[Row]:
    """Raw aiohttp and the gateway, servers in child processes, measured interleaved."""
    number = max(200, int(NUMBER * cfg.async_scale))
    requests = number * (cfg.warmup + cfg.repeats)
    cases: dict[str, tuple[str, Callable[[int], object]]] = {
        "gateway": (
            "/v1/messages?wait=5",
            lambda i: {"type": "echo", "destination": "echo", "content": i},
        ),
        "raw": ("/echo", lambda i: {"content": i}),
    }
    with pinned(), contextlib.ExitStack() as stack:
        portal = stack.enter_context(event_loop("asyncio"))
        samplers: dict[str, Latency] = {}
        servers: dict[str, Server] = {}
        for kind, (path, body) in cases.items():
            log(f"{kind} server: POST {path}")
            server = servers[kind] = stack.enter_context(_server(kind))
            session = portal.call(_session)
            stack.callback(portal.call, session.close)
            url = f"http://127.0.0.1:{server.port}{path}"
            samplers[kind] = async_latency(portal, _round_trip(session, url, body), number)
        before = {kind: server.cpu_seconds() for kind, server in servers.items()}
        p50 = interleave(samplers, cfg)
        cpu = {
            kind: (server.cpu_seconds() - before[kind]) * 1e6 / requests
            for kind, server in servers.items()
        }
    rates = {kind: sampler.rates(cfg.repeats) for kind, sampler in samplers.items()}
    gateway_cpu = None if math.isnan(cpu["gateway"]) else cpu["gateway"]
    raw_cpu = None if math.isnan(cpu["raw"]) else cpu["raw"]
    return [
        Row(
            G1,
            rates["gateway"].median,
            "rt/s",
            "raw aiohttp JSON POST",
            rates["raw"].median,
            kind="min",
            target=TARGET,
            spread=rates["gateway"].spread,
            pairs=paired(rates["gateway"], rates["raw"]),
        ),
        Row(
            "  the same, p50",
            p50["gateway"].median,
            "µs",
            "raw aiohttp p50",
            p50["raw"].median,
            pairs=paired(p50["gateway"], p50["raw"]),
        ),
        Row("  server CPU per request", gateway_cpu, "µs", "raw aiohttp server", raw_cpu),
    ]


# --------------------------------------------------------------------------- the servers


async def _serve(kind: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if kind == "raw":
            from aiohttp import web

            async def echo(request: web.Request) -> web.Response:
                data = await request.json()
                return web.json_response({"content": data["content"]})

            app = web.Application()
            app.router.add_post("/echo", echo)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
        else:
            from dispatchio import BasicMessageListener, MessageDispatcher

            # The gateway as users get it: the HTTP transport's own listener, its guard
            # and all, on a port of its choosing.
            dispatcher = MessageDispatcher("bench", listen=["http://127.0.0.1:0"])
            listener = BasicMessageListener("echo")
            listener.add_rule(callback=lambda m: m.content)
            dispatcher.register(listener)
            await stack.enter_async_context(dispatcher)
            port = int(dispatcher.listen_urls[0].rsplit(":", 1)[1])
        print(port, flush=True)
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
