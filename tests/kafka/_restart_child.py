"""Letters across a broker restart, in a process of its own: ``_restart_child.py BACKEND``.

Process "a" sends letters to a listener of "b": 200 with the broker up (all received),
200 while it is down (kafka-python holds them; the restarted broker, which lost its
state, refuses them or the producer), 200 once both see each other again. Prints one
JSON line: the letters received in the order handled, and the letters the transport
reported lost (frames it gave up on come back to the core as ``peer_down``). A process
of its own for the reason given in ``_outage_child.py``.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import anyio
import anyio.to_thread

from dispatchio import BasicMessageListener, Message, MessageDispatcher
from dispatchio_kafka import local_broker

PHASE = 200


class _Log(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def scenario(result: dict[str, Any]) -> None:
    log = _Log()
    logging.getLogger("dispatchio.kafka").addHandler(log)
    received: list[int] = []
    arrived = {PHASE: anyio.Event(), 3 * PHASE: anyio.Event()}

    def sink(message: Message) -> None:
        received.append(message.content)
        if message.content + 1 in arrived:
            arrived[message.content + 1].set()

    with local_broker() as first:
        port, url = first.port, first.url("restart")
        settings: dict[str, Any] = {
            "listen": [url],
            "heartbeat_interval": 0.2,
            "heartbeat_tolerance": 3,
        }
        async with MessageDispatcher("a", **settings) as a, MessageDispatcher("b", **settings) as b:
            listener = BasicMessageListener("sink")
            listener.add_rule(callback=sink)
            b.register(listener)
            await a.wait_for_listener("sink", timeout=20)
            for n in range(PHASE):
                await a.send(Message("letter", n, destination="sink"))
            with anyio.fail_after(20):
                await arrived[PHASE].wait()
            await anyio.to_thread.run_sync(first.stop)
            for n in range(PHASE, 2 * PHASE):
                await a.send(Message("letter", n, destination="sink"))
            with local_broker(port):
                await a.wait_for_peer("b", timeout=30)
                await b.wait_for_peer("a", timeout=30)
                await a.wait_for_listener("sink", timeout=30)
                for n in range(2 * PHASE, 3 * PHASE):
                    await a.send(Message("letter", n, destination="sink"))
                with anyio.fail_after(40):
                    await arrived[3 * PHASE].wait()
    result["received"] = received
    result["lost_reports"] = [m for m in log.messages if "were lost" in m]
    result["resent"] = [m for m in log.messages if "sending them again" in m]
    result["recreated"] = [m for m in log.messages if "re-created" in m]


def main() -> None:
    result: dict[str, Any] = {}
    anyio.run(scenario, result, backend=sys.argv[1])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
