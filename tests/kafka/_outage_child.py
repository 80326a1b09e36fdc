"""The broker-outage scenario, run in a process of its own: ``_outage_child.py BACKEND``.

It starts a broker, runs two dispatchers, stops the broker, restarts it on the same
port and prints one JSON line with what happened. A process of its own because
kafka-python 3.0.12 leaks the socket of every refused connection attempt while the
broker is down (kafka/net/inet.py); its ResourceWarnings would land in whatever test the
garbage collector happens to run in.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import anyio.to_thread

from dispatchio import BasicMessageListener, DeliveryError, Message, MessageDispatcher
from dispatchio_kafka import local_broker

HEARTBEAT_INTERVAL = 0.2
# A bound of 2 s, not 0.6 s: once the broker is back, each side's consumer re-reads the
# re-created topics and waits for fresh metadata, and on a loaded 2-core machine that
# pause alone passed 0.6 s (a peer just seen again was declared gone before the request
# after the outage). test_broker_outage.py derives its bound from these two.
HEARTBEAT_TOLERANCE = 10


async def scenario(result: dict[str, Any]) -> None:
    with local_broker() as first:
        port, url = first.port, first.url("outage")
        settings: dict[str, Any] = {
            "listen": [url],
            "heartbeat_interval": HEARTBEAT_INTERVAL,
            "heartbeat_tolerance": HEARTBEAT_TOLERANCE,
        }
        async with MessageDispatcher("a", **settings) as a, MessageDispatcher("b", **settings) as b:
            echo = BasicMessageListener("echo")
            echo.add_rule(callback=lambda message: message.content)
            b.register(echo)
            await a.wait_for_listener("echo", timeout=20)
            result["before"] = (
                await a.request(Message("ping", "before", destination="echo"))
            ).content
            await anyio.to_thread.run_sync(first.stop)
            started = time.monotonic()
            try:
                await a.request(Message("ping", "during", destination="echo"))
            except DeliveryError as exc:
                result["during"] = type(exc).__name__
            result["failed_after"] = time.monotonic() - started
            with local_broker(port):
                started = time.monotonic()
                await a.wait_for_peer("b", timeout=20)
                await b.wait_for_peer("a", timeout=20)
                reply = await a.request(Message("ping", "after", destination="echo"))
                result["after"] = reply.content
                result["resumed_after"] = time.monotonic() - started
                started = time.monotonic()
        result["closed_after"] = time.monotonic() - started


def main() -> None:
    result: dict[str, Any] = {}
    anyio.run(scenario, result, backend=sys.argv[1])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
