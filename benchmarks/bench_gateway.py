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
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, cast

from _harness import Config, Row, render_rows
from bench_tcp import RoundTrips, async_round_trips, pinned

HERE = Path(__file__).resolve()
NUMBER = 3000
TARGET = 0.7


@contextlib.contextmanager
def _server(kind: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "--serve", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    try:
        if os.environ.get("BENCH_TCP_PIN", "1") != "0" and len(usable) >= 2:
            all_cpus = sorted(os.sched_getaffinity(proc.pid))
            others = [c for c in all_cpus if c not in os.sched_getaffinity(0)]
            if others:
                os.sched_setaffinity(proc.pid, {others[0]})
        line = cast("IO[bytes]", proc.stdout).readline()
        if not line:
            raise RuntimeError(f"the {kind} server exited with code {proc.wait(10)}")
        yield int(line)
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
    results: dict[str, RoundTrips] = {}
    with pinned():
        log("raw aiohttp JSON POST")
        with _server("raw") as port:
            results["raw"] = asyncio.run(
                _client(f"http://127.0.0.1:{port}/echo", lambda i: {"content": i}, number, cfg)
            )
        log("gateway POST /v1/messages?wait=")
        with _server("gateway") as port:
            results["gateway"] = asyncio.run(
                _client(
                    f"http://127.0.0.1:{port}/v1/messages?wait=5",
                    lambda i: {"type": "echo", "destination": "echo", "content": i},
                    number,
                    cfg,
                )
            )
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
        Row(
            "  the same, p50",
            gateway.p50.median,
            "µs",
            "raw aiohttp p50",
            raw.p50.median,
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
