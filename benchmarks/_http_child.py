"""The other process of the HTTP benchmarks (started by bench_http.py, never by hand).

Usage: ``python _http_child.py raw | dio``

* ``raw``: a plain aiohttp server whose ``POST /echo`` parses the JSON body and answers
  it as JSON: the baseline a dispatchio request over ``http://`` is compared with.
* ``dio``: a dispatcher listening on ``http://127.0.0.1:0`` with the listeners of the
  TCP benchmark's child (``echo``, and ``sink`` which checks order and answers ``done``;
  see ``_dio_child.py``).

The child prints ONE JSON line on stdout saying where it listens, then serves until its
stdin reaches EOF; ``dio`` also answers a ``report`` line with one JSON line of totals.
"""

from __future__ import annotations

import asyncio
import os
import sys

from _dio_child import ready, serve_dispatcher


async def _raw_main() -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await request.json())

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ready({"url": f"http://127.0.0.1:{runner.addresses[0][1]}/echo", "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        pass
    await runner.cleanup()


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else ""
    if mode == "raw":
        asyncio.run(_raw_main())
    elif mode == "dio":
        serve_dispatcher("http://127.0.0.1:0", "asyncio")
    else:
        raise SystemExit(f"usage: {sys.argv[0]} raw | dio")


if __name__ == "__main__":
    main(sys.argv[1:])
