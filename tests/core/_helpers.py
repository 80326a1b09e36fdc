"""Scaffolding shared by the core tests: memory streams, one-rule listeners, a recorder."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dispatchio import BasicMessageListener, Message, MessageDispatcher, MessageListener

Streams = tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message]]
"""Both ends of an unbounded memory stream of messages: ``(send, receive)``."""

SENDER = "sender"
"""The ID of the listener the ``inbox`` fixture registers."""


@contextmanager
def open_streams() -> Iterator[Streams]:
    """An unbounded memory stream of messages, both ends closed on exit."""
    send, receive = anyio.create_memory_object_stream[Message](math.inf)
    with send, receive:
        yield send, receive


def listener(dispatcher: MessageDispatcher, lid: str, **rule: Any) -> BasicMessageListener:
    """Register a listener ``lid`` with one rule (or none when ``rule`` is empty)."""
    made = BasicMessageListener(lid)
    if rule:
        made.add_rule(**rule)
    dispatcher.register(made)
    return made


class RecordingListener(MessageListener):
    """A listener that records which pathway handled each message."""

    def __init__(self, id: str | None = None) -> None:
        self.id = id
        self.calls: list[tuple[str, Message]] = []

    def handle_message_sync(self, message: Message) -> Any:
        self.calls.append(("sync", message))
        return "from sync"

    async def handle_message(self, message: Message) -> Any:
        self.calls.append(("async", message))
        await anyio.lowlevel.checkpoint()
        return "from async"
