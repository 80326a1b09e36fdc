"""A process of the durable-inbox test: ``python _durable_child.py BACKEND URL PROCESS_ID``.

Its listeners are registered before ``async with dispatcher:``, so letters waiting in
its inbox find them at once. Every message its listeners receive is printed as a JSON
line on stdout (``{"letter": ...}``, ``{"news": ...}``); ``{"ready": true}`` says it
runs. A line ``stop`` on stdin (or its end) makes it leave cleanly.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import anyio.to_thread

from dispatchio import BasicMessageListener, Message, MessageDispatcher

HEARTBEAT_INTERVAL = 0.2
HEARTBEAT_TOLERANCE = 3


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def recorder(lid: str, key: str) -> BasicMessageListener:
    listener = BasicMessageListener(lid)

    def record(message: Message) -> None:
        emit({key: message.content})

    listener.add_rule(callback=record)
    return listener


async def main(url: str, process_id: str) -> None:
    dispatcher = MessageDispatcher(
        process_id,
        listen=[url],
        heartbeat_interval=HEARTBEAT_INTERVAL,
        heartbeat_tolerance=HEARTBEAT_TOLERANCE,
    )
    dispatcher.register(recorder(f"sink-{process_id}", "letter"))
    dispatcher.register(recorder(f"news-{process_id}", "news"))
    dispatcher.subscribe("news", f"news-{process_id}")
    echo = BasicMessageListener(f"echo-{process_id}")
    echo.add_rule(callback=lambda message: [process_id, message.content])
    dispatcher.register(echo)
    async with dispatcher:
        emit({"ready": True})
        await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[2], sys.argv[3], backend=sys.argv[1])
