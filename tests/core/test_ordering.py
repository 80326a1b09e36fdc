"""Messages from one sender to one destination start being handled in the order they were sent."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from dispatchio import Message, MessageDispatcher
from tests.core._helpers import Streams, listener

COUNT = 1000


async def send_count_and_wait(dispatcher: MessageDispatcher, done: anyio.Event) -> None:
    """Run the dispatcher: send letters 0 .. COUNT-1 from "a" to "b", then wait for ``done``."""
    with anyio.fail_after(5):
        async with dispatcher:
            for n in range(COUNT):
                await dispatcher.send(Message("n", n, source="a", destination="b"))
            await done.wait()


@pytest.mark.anyio
async def test_sync_callback_handles_messages_in_the_order_sent(
    dispatcher: MessageDispatcher,
) -> None:
    started: list[int] = []
    all_in = anyio.Event()

    def record(message: Message) -> Any:
        started.append(message.content)
        if len(started) == COUNT:
            all_in.set()

    listener(dispatcher, "b", callback=record)
    await send_count_and_wait(dispatcher, all_in)
    assert started == list(range(COUNT))


@pytest.mark.anyio
async def test_async_callback_that_sometimes_suspends_starts_messages_in_the_order_sent(
    dispatcher: MessageDispatcher,
) -> None:
    started: list[int] = []
    finished = 0
    all_done = anyio.Event()

    async def record(message: Message) -> Any:
        nonlocal finished
        started.append(message.content)  # at entry, before any suspension
        if message.content % 7 == 0:
            await anyio.sleep(0)
        if message.content % 11 == 0:
            await anyio.sleep(0)
            await anyio.sleep(0)
        finished += 1
        if finished == COUNT:
            all_done.set()

    listener(dispatcher, "b", callback=record)
    await send_count_and_wait(dispatcher, all_done)
    assert started == list(range(COUNT))


@pytest.mark.anyio
async def test_replies_to_a_send_loop_arrive_in_order(
    dispatcher: MessageDispatcher, streams: Streams
) -> None:
    inbox_in, inbox = streams
    listener(dispatcher, "a", queue=inbox_in)
    listener(dispatcher, "b", callback=lambda m: m.content * 10)
    with anyio.fail_after(5):
        async with dispatcher:
            for n in range(COUNT):
                await dispatcher.send(Message("n", n, source="a", destination="b"))
            replies = [(await inbox.receive()).content for _ in range(COUNT)]
    assert replies == [n * 10 for n in range(COUNT)]


@pytest.mark.anyio
async def test_interleaved_sends_and_requests_are_handled_in_the_order_sent(
    dispatcher: MessageDispatcher,
) -> None:
    started: list[int] = []
    listener(dispatcher, "b", callback=lambda m: started.append(m.content))
    with anyio.fail_after(5):
        async with dispatcher:
            for n in range(COUNT):
                message = Message("n", n, source="a", destination="b")
                if n % 10 == 9:
                    await dispatcher.request(message)
                else:
                    await dispatcher.send(message)
            await dispatcher.request(Message("n", COUNT, destination="b"))
    assert started == list(range(COUNT + 1))
