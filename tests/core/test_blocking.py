"""Blocking messages: later messages to the same destination (or group) wait until it is handled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from dispatchio import DEFERRED, Message, MessageDispatcher
from tests.core._helpers import Streams, listener, open_streams


class Gated:
    """An async handler that logs when each message starts and ends, and finishes a message
    only when the test opens its gate. Messages are keyed by their content."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self._gates: dict[Any, anyio.Event] = {}
        self._entered: dict[Any, anyio.Event] = {}
        self._left: dict[Any, anyio.Event] = {}

    def gate(self, key: Any) -> anyio.Event:
        return self._gates.setdefault(key, anyio.Event())

    def entered(self, key: Any) -> anyio.Event:
        return self._entered.setdefault(key, anyio.Event())

    def left(self, key: Any) -> anyio.Event:
        return self._left.setdefault(key, anyio.Event())

    async def handle(self, message: Message) -> Any:
        key = message.content
        self.log.append(f"start {key}")
        self.entered(key).set()
        await self.gate(key).wait()
        self.log.append(f"end {key}")
        self.left(key).set()
        return key


@pytest.fixture
def kept() -> Iterator[Streams]:
    with open_streams() as pair:
        yield pair


@pytest.fixture
def kept_too() -> Iterator[Streams]:
    with open_streams() as pair:
        yield pair


def register_barrier(dispatcher: MessageDispatcher) -> None:
    listener(dispatcher, "barrier", callback=lambda m: "done")


async def barrier(dispatcher: MessageDispatcher) -> None:
    """Every message sent before this call has been taken off the dispatcher's queue."""
    assert (await dispatcher.request(Message("barrier", destination="barrier"))).content == "done"


def assert_empty(stream: MemoryObjectReceiveStream[Message]) -> None:
    with pytest.raises(anyio.WouldBlock):
        stream.receive_nowait()


async def assert_blocking_message_holds_the_next_until_reply(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    """Listener "b" hands what it takes to ``kept``: a blocking message 1 to "b" holds message 2
    until 1 is replied to."""
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("m", 1, destination="b", blocking=True))
            await dispatcher.send(Message("m", 2, destination="b"))
            first = await kept[1].receive()
            await barrier(dispatcher)
            assert_empty(kept[1])
            await dispatcher.reply(first)
            second = await kept[1].receive()
    assert (first.content, second.content) == (1, 2)


@pytest.mark.anyio
async def test_blocking_message_holds_later_messages_until_its_handler_returns(
    dispatcher: MessageDispatcher,
) -> None:
    gated = Gated()
    listener(dispatcher, "b", callback=gated.handle)
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("m", 1, destination="b", blocking=True))
            await dispatcher.send(Message("m", 2, destination="b"))
            await gated.entered(1).wait()
            await barrier(dispatcher)
            assert gated.log == ["start 1"]
            gated.gate(1).set()
            gated.gate(2).set()
            await gated.left(1).wait()
            await gated.left(2).wait()
    assert gated.log == ["start 1", "end 1", "start 2", "end 2"]


@pytest.mark.anyio
async def test_blocking_message_to_deferring_handler_holds_until_reply(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    def keep(message: Message) -> Any:
        kept[0].send_nowait(message)
        return DEFERRED

    listener(dispatcher, "b", callback=keep)
    await assert_blocking_message_holds_the_next_until_reply(dispatcher, kept)


@pytest.mark.anyio
async def test_blocking_message_on_queue_rule_holds_until_reply(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    listener(dispatcher, "b", queue=kept[0])
    await assert_blocking_message_holds_the_next_until_reply(dispatcher, kept)


@pytest.mark.anyio
async def test_blocking_message_does_not_hold_other_destinations(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    listener(dispatcher, "b", queue=kept[0])
    listener(dispatcher, "c", callback=lambda m: f"c got {m.content}")
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("m", 1, destination="b", blocking=True))
            held = await kept[1].receive()
            response = await dispatcher.request(Message("m", 2, destination="c"))
            await dispatcher.reply(held)
    assert response.content == "c got 2"


@pytest.mark.anyio
async def test_blocking_message_whose_handler_raises_releases_its_destination(
    dispatcher: MessageDispatcher,
) -> None:
    def rule(message: Message) -> Any:
        if message.content == 1:
            raise ValueError("first one fails")
        return f"got {message.content}"

    listener(dispatcher, "b", callback=rule)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("m", 1, destination="b", blocking=True))
            response = await dispatcher.request(Message("m", 2, destination="b"))
    assert response.content == "got 2"
    assert dispatcher.stats.handler_errors == 1


@pytest.mark.anyio
async def test_blocking_group_message_holds_later_group_messages_until_every_subscriber_handled_it(
    dispatcher: MessageDispatcher, kept: Streams, kept_too: Streams
) -> None:
    listener(dispatcher, "x", queue=kept[0])
    listener(dispatcher, "y", queue=kept_too[0])
    dispatcher.subscribe("g", "x")
    dispatcher.subscribe("g", "y")
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("m", 1, group="g", blocking=True))
            await dispatcher.send(Message("m", 2, group="g"))
            x_first = await kept[1].receive()
            y_first = await kept_too[1].receive()
            await barrier(dispatcher)
            assert_empty(kept[1])
            assert_empty(kept_too[1])
            await dispatcher.reply(x_first)
            await barrier(dispatcher)
            assert_empty(kept[1])  # y has not handled the blocking message yet
            assert_empty(kept_too[1])
            await dispatcher.reply(y_first)
            x_second = await kept[1].receive()
            y_second = await kept_too[1].receive()
    assert (x_first.content, y_first.content) == (1, 1)
    assert (x_second.content, y_second.content) == (2, 2)


@pytest.mark.anyio
async def test_non_blocking_messages_to_one_destination_run_concurrently(
    dispatcher: MessageDispatcher,
) -> None:
    gated = Gated()
    listener(dispatcher, "b", callback=gated.handle)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("m", 1, destination="b"))
            await dispatcher.send(Message("m", 2, destination="b"))
            await gated.entered(1).wait()
            await gated.entered(2).wait()  # while message 1 is still suspended
            assert gated.log == ["start 1", "start 2"]
            gated.gate(1).set()
            gated.gate(2).set()
            await gated.left(1).wait()
            await gated.left(2).wait()
