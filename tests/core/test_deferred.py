"""Deferred replies: a handler returns DEFERRED (or a queue rule takes the message) and
the answer comes later through `MessageDispatcher.reply`."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from dispatchio import DEFERRED, DispatcherNotRunningError, Message, MessageDispatcher
from tests.core._helpers import SENDER, Streams, listener


@pytest.fixture
def kept(streams: Streams) -> Streams:
    """Where handlers put the messages they keep to answer later."""
    return streams


def deferring_listener(dispatcher: MessageDispatcher, lid: str, kept: Streams) -> None:
    """A callback rule that keeps each message (hands it to the test) and returns DEFERRED."""

    def keep(message: Message) -> Any:
        kept[0].send_nowait(message)
        return DEFERRED

    listener(dispatcher, lid, callback=keep)


@pytest.mark.anyio
async def test_deferred_handler_answers_request_later_through_reply(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    deferring_listener(dispatcher, "b", kept)
    responses: list[Message] = []

    async def requester() -> None:
        responses.append(await dispatcher.request(Message("ask", destination="b")))

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(requester)
            message = await kept[1].receive()
            assert responses == []
            await dispatcher.reply(message, "later")
    assert [(r.id, r.source, r.content) for r in responses] == [(message.id, "b", "later")]


@pytest.mark.anyio
async def test_deferred_handler_answers_letter_later_to_the_source_listener(
    dispatcher: MessageDispatcher, kept: Streams, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    deferring_listener(dispatcher, "b", kept)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("ask", source=SENDER, destination="b"))
            message = await kept[1].receive()
            await dispatcher.reply(message, "later")
            reply = await inbox.receive()
    assert (reply.id, reply.source, reply.content, reply.is_response) == (
        message.id,
        "b",
        "later",
        True,
    )


@pytest.mark.anyio
async def test_consumer_task_replies_to_a_queued_message(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    listener(dispatcher, "worker", queue=kept[0])

    async def consumer() -> None:
        async for job in kept[1]:
            await dispatcher.reply(job, job.content.upper())

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            first = await dispatcher.request(Message("job", "one", destination="worker"))
            second = await dispatcher.request(Message("job", "two", destination="worker"))
            tg.cancel_scope.cancel()
    assert (first.content, second.content) == ("ONE", "TWO")


@pytest.mark.anyio
async def test_reply_before_dispatcher_runs_raises_not_running(
    dispatcher: MessageDispatcher,
) -> None:
    message = Message("ask", id=1, source="a", destination="b")
    with anyio.fail_after(5), pytest.raises(DispatcherNotRunningError):
        await dispatcher.reply(message, "too early")


@pytest.mark.anyio
async def test_reply_after_dispatcher_exits_raises_not_running(
    dispatcher: MessageDispatcher, kept: Streams
) -> None:
    deferring_listener(dispatcher, "b", kept)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("ask", destination="b"))
            message = await kept[1].receive()
        with pytest.raises(DispatcherNotRunningError):
            await dispatcher.reply(message, "too late")


@pytest.mark.anyio
async def test_second_reply_to_an_answered_request_is_dropped_not_sent_to_the_source(
    dispatcher: MessageDispatcher, kept: Streams, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    deferring_listener(dispatcher, "b", kept)
    responses: list[Message] = []

    async def requester() -> None:
        responses.append(await dispatcher.request(Message("ask", source=SENDER, destination="b")))

    with anyio.fail_after(5):
        async with dispatcher:
            async with anyio.create_task_group() as tg:
                tg.start_soon(requester)
                message = await kept[1].receive()
                await dispatcher.reply(message, "first")
            await dispatcher.reply(message, "second")  # the request already has its answer
        # The dispatcher has delivered everything it accepted: the sender's listener got nothing.
        with pytest.raises(anyio.WouldBlock):
            inbox.receive_nowait()
    assert [r.content for r in responses] == ["first"]
    assert dispatcher.stats.late_replies == 1
