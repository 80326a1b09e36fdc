"""The dispatchio side of the benchmarks' child processes (``_tcp_child.py dio``,
``_http_child.py dio``): the same dispatcher and listeners on whichever URL they listen on.

Listeners: ``echo`` answers a ``ping`` with its content; ``sink`` takes ``data`` messages
whose content is a sequence number from 0, and answers ``done`` with ``{"count": n,
"in_order": bool, "cpu_s": s}`` for the batch since the previous ``done`` (``cpu_s``:
the CPU seconds this process has used so far). The child prints ONE JSON
line ``{"url": ..., "pid": ...}`` once it listens, answers a ``report`` line on stdin with
one JSON line of totals (and ``cpu_s``, the CPU seconds it has used so far), and returns
when stdin reaches EOF.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def ready(info: dict[str, Any]) -> None:
    """Print ``info`` as the one JSON line the parent reads."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def serve_dispatcher(listen: str, backend: str) -> None:
    """Serve dispatcher "bench-child" on ``listen`` until stdin reaches EOF (see above).

    With ``BENCH_TCP_CHILD_PROFILE=FILE`` in the environment it runs under cProfile and
    writes the profile to FILE.
    """
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
        result = {
            "count": batch["count"],
            "in_order": bool(batch["in_order"]),
            "cpu_s": time.process_time(),
        }
        totals["count"] += batch["count"]
        totals["in_order"] = bool(totals["in_order"] and batch["in_order"])
        totals["batches"] += 1
        batch.update(count=0, expected=0, in_order=True)
        return result

    def echo(message: Message) -> Any:
        return message.content

    async def main() -> None:
        dispatcher = MessageDispatcher("bench-child", listen=[listen], reply_timeout=30.0)
        echo_listener = BasicMessageListener("echo")
        echo_listener.add_rule(type="ping", callback=echo)
        sink = BasicMessageListener("sink")
        sink.add_rule(type="data", callback=on_data)
        sink.add_rule(type="done", callback=on_done)
        dispatcher.register(echo_listener)
        dispatcher.register(sink)
        async with dispatcher:
            ready({"url": dispatcher.listen_urls[0], "pid": os.getpid()})
            while line := await anyio.to_thread.run_sync(sys.stdin.readline):
                if line.strip() == "report":
                    ready({**totals, "cpu_s": time.process_time()})

    profile = os.environ.get("BENCH_TCP_CHILD_PROFILE")
    if profile:
        import cProfile

        cProfile.runctx("anyio.run(main, backend=backend)", globals(), locals(), filename=profile)
    else:
        anyio.run(main, backend=backend)
