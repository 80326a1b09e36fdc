"""The specification's asynchronous table, cell by cell, through `request` and letter-style `send`.

| Handler          | Response from Listener in Same Process                         |
|------------------|----------------------------------------------------------------|
| Callback         | Callback return data sent back to sender                       |
| Async Callback   | Callback return data sent back to sender                       |
| Message Queue    | Message placed on queue                                        |
| Another Listener | Message goes to other listener's asynchronous handling pathway |

With `request` the reply is the return value; with `send` the reply is a response message
delivered to the sender's own listener (here a queue rule feeding a memory stream).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from dispatchio import BasicMessageListener, Message, MessageDispatcher, MessageListener
from tests.core._helpers import SENDER, Streams

RESPONDER = "responder"


class PathwayRecorder(MessageListener):
    """An anonymous listener (chained to, never registered) that records which pathway ran."""

    def __init__(self) -> None:
        self.pathways: list[str] = []

    def handle_message_sync(self, message: Message) -> Any:
        self.pathways.append("sync")
        return ("sync", message.content)

    async def handle_message(self, message: Message) -> Any:
        self.pathways.append("async")
        await anyio.sleep(0)
        return ("async", message.content)


def register_responder(dispatcher: MessageDispatcher, **action: Any) -> BasicMessageListener:
    responder = BasicMessageListener(RESPONDER)
    responder.add_rule(type="ask", **action)
    dispatcher.register(responder)
    return responder


def ask(content: Any = 21) -> Message:
    return Message("ask", content, source=SENDER, destination=RESPONDER)


def assert_answers(response: Message, original: Message, content: Any) -> None:
    """The response shape: same id and type, addressed back from the responder."""
    assert response.is_response is True
    assert response.id == original.id
    assert response.source == RESPONDER
    assert response.destination == SENDER
    assert response.type == original.type
    assert response.content == content
    assert response.error is None


def double(message: Message) -> Any:
    return message.content * 2


async def async_double(message: Message) -> Any:
    await anyio.sleep(0)  # really suspend, so the handler outlives its first step
    return message.content * 2


async def request_to_responder(
    dispatcher: MessageDispatcher, **action: Any
) -> tuple[Message, Message]:
    """Register the responder with ``action``, run the dispatcher and `request` one ask():
    the message sent and the response."""
    register_responder(dispatcher, **action)
    async with dispatcher:
        message = ask()
        return message, await dispatcher.request(message)


async def send_to_responder(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message], **action: Any
) -> tuple[Message, Message]:
    """Register the responder with ``action``, run the dispatcher and `send` one ask() as a
    letter: the message sent and the response that reached the sender's inbox."""
    register_responder(dispatcher, **action)
    async with dispatcher:
        message = ask()
        await dispatcher.send(message)
        return message, await inbox.receive()


# ------------------------------------------------------------------ callback


@pytest.mark.anyio
async def test_request_to_callback_returns_its_return_value(
    dispatcher: MessageDispatcher,
) -> None:
    with anyio.fail_after(5):
        message, response = await request_to_responder(dispatcher, callback=double)
    assert_answers(response, message, 42)


@pytest.mark.anyio
async def test_request_to_callback_behind_a_queued_message_returns_its_return_value(
    dispatcher: MessageDispatcher,
) -> None:
    # A letter queued first makes the request take the worker's path, not the inline one.
    register_responder(dispatcher, callback=double)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("ask", 1, destination=RESPONDER))
            message = ask()
            response = await dispatcher.request(message)
    assert_answers(response, message, 42)


@pytest.mark.anyio
async def test_send_to_callback_sends_its_return_value_to_the_sender(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    with anyio.fail_after(5):
        message, response = await send_to_responder(dispatcher, inbox, callback=double)
    assert_answers(response, message, 42)


# ------------------------------------------------------------------ async callback


@pytest.mark.anyio
async def test_request_to_async_callback_returns_its_return_value(
    dispatcher: MessageDispatcher,
) -> None:
    with anyio.fail_after(5):
        message, response = await request_to_responder(dispatcher, callback=async_double)
    assert_answers(response, message, 42)


@pytest.mark.anyio
async def test_send_to_async_callback_sends_its_return_value_to_the_sender(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    with anyio.fail_after(5):
        message, response = await send_to_responder(dispatcher, inbox, callback=async_double)
    assert_answers(response, message, 42)


# ------------------------------------------------------------------ message queue


@pytest.mark.anyio
async def test_request_to_queue_places_message_on_queue_and_consumer_reply_returns(
    dispatcher: MessageDispatcher, streams: Streams
) -> None:
    jobs_in, jobs = streams
    register_responder(dispatcher, queue=jobs_in)
    taken: list[Message] = []

    async def consumer() -> None:
        job = await jobs.receive()
        taken.append(job)
        await dispatcher.reply(job, job.content * 2)

    with anyio.fail_after(5):
        async with dispatcher, anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            message = ask()
            response = await dispatcher.request(message)
    assert [(job.id, job.type, job.content) for job in taken] == [(message.id, "ask", 21)]
    assert_answers(response, message, 42)


@pytest.mark.anyio
async def test_send_to_queue_places_message_on_queue_and_consumer_reply_reaches_sender(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message], streams: Streams
) -> None:
    jobs_in, jobs = streams
    register_responder(dispatcher, queue=jobs_in)
    with anyio.fail_after(5):
        async with dispatcher:
            message = ask()
            await dispatcher.send(message)
            job = await jobs.receive()
            assert (job.id, job.type, job.content) == (message.id, "ask", 21)
            await dispatcher.reply(job, job.content * 2)
            response = await inbox.receive()
    assert_answers(response, message, 42)


# ------------------------------------------------------------------ another listener


@pytest.mark.anyio
async def test_request_to_chained_listener_runs_its_async_pathway(
    dispatcher: MessageDispatcher,
) -> None:
    recorder = PathwayRecorder()
    with anyio.fail_after(5):
        message, response = await request_to_responder(dispatcher, listener=recorder)
    assert recorder.pathways == ["async"]
    assert_answers(response, message, ("async", 21))


@pytest.mark.anyio
async def test_send_to_chained_listener_runs_its_async_pathway(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    recorder = PathwayRecorder()
    with anyio.fail_after(5):
        message, response = await send_to_responder(dispatcher, inbox, listener=recorder)
    assert recorder.pathways == ["async"]
    assert_answers(response, message, ("async", 21))
