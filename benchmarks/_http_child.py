"""The other process of the HTTP benchmarks (started by bench_http.py, never by hand).

Usage: ``python _http_child.py raw | dio``

* ``raw``: a plain aiohttp server whose ``POST /echo`` parses the JSON body and answers
  it as JSON: the baseline a dispatchio request over ``http://`` is compared with.
* ``dio``: a dispatcher listening on ``http://127.0.0.1:0`` with the listeners of the
  TCP benchmark's child (``echo``, and ``sink`` which checks order and answers ``done``).

The child prints ONE JSON line on stdout saying where it listens, then serves until its
stdin reaches EOF; ``dio`` also answers a ``report`` line with one JSON line of totals.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


def _ready(info: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


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
    _ready({"url": f"http://127.0.0.1:{runner.addresses[0][1]}/echo", "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        pass
    await runner.cleanup()


def _dio_main() -> None:
    import anyio
    import anyio.to_thread

    from dispatchio import BasicMessageListener, Message, MessageDispatcher

    totals = {"count": 0, "in_order": True, "batches": 0}
    batch = {"count": 0, "expected": 0, "in_order": True}

    def on_data(message: Message) -> None:
        seq = message.content
        if seq != batch["expected"]:
            batch["in_order"] = False
        batch["expected"] = seq + 1
        batch["count"] += 1

    def on_done(message: Message) -> dict[str, Any]:
        result = {"count": batch["count"], "in_order": bool(batch["in_order"])}
        totals["count"] += batch["count"]
        totals["in_order"] = bool(totals["in_order"] and batch["in_order"])
        totals["batches"] += 1
        batch.update(count=0, expected=0, in_order=True)
        return result

    async def main() -> None:
        dispatcher = MessageDispatcher(
            "bench-child", listen=["http://127.0.0.1:0"], reply_timeout=30.0
        )
        echo = BasicMessageListener("echo")
        echo.add_rule(type="ping", callback=lambda message: message.content)
        sink = BasicMessageListener("sink")
        sink.add_rule(type="data", callback=on_data)
        sink.add_rule(type="done", callback=on_done)
        dispatcher.register(echo)
        dispatcher.register(sink)
        async with dispatcher:
            _ready({"url": dispatcher.listen_urls[0], "pid": os.getpid()})
            while line := await anyio.to_thread.run_sync(sys.stdin.readline):
                if line.strip() == "report":
                    _ready(totals)

    anyio.run(main, backend="asyncio")


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else ""
    if mode == "raw":
        asyncio.run(_raw_main())
    elif mode == "dio":
        _dio_main()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} raw | dio")


if __name__ == "__main__":
    main(sys.argv[1:])
