"""Letter-style `MessageDispatcher.send`: replies and returned letters go to the source listener."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dispatchio import DEFERRED, Message, MessageDispatcher, ReplyTimeoutError, UndeliverableError
from tests.core._helpers import Streams, listener


def register_barrier(dispatcher: MessageDispatcher) -> None:
    """Listener "barrier" answers every message; its reply proves earlier messages are done."""
    listener(dispatcher, "barrier", callback=lambda m: "barrier reply")


async def barrier(dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]) -> None:
    """Send a letter to "barrier" and wait for its reply: anything sent before has arrived."""
    await dispatcher.send(Message("barrier", source="sender", destination="barrier"))
    arrived = await inbox.receive()
    assert (arrived.type, arrived.content) == ("barrier", "barrier reply")
    with pytest.raises(anyio.WouldBlock):
        inbox.receive_nowait()


async def assert_send_to_nobody_raises(dispatcher: MessageDispatcher, letter: Message) -> None:
    """Run the dispatcher: sending ``letter`` (to "nobody") raises UndeliverableError naming it."""
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(UndeliverableError, match="nobody"):
                await dispatcher.send(letter)


def assert_returned(returned: Message, letter: Message, reason: str) -> None:
    """``returned`` is ``letter`` come back to its source, its error starting with ``reason``."""
    assert returned.error is not None
    assert returned.error.startswith(reason)
    assert (returned.id, returned.is_response) == (letter.id, True)


def fail(message: Message) -> Any:
    raise ValueError("bad letter")


def thankful_sender(
    dispatcher: MessageDispatcher, inbox_in: MemoryObjectSendStream[Message]
) -> None:
    """Register listener "sender": its rule passes every message on and would answer "thanks"."""

    def sender_rule(message: Message) -> Any:
        inbox_in.send_nowait(message)
        return "thanks"  # would be an answer, were responses ever answered

    listener(dispatcher, "sender", callback=sender_rule)


@pytest.mark.anyio
async def test_handler_result_goes_to_the_source_listener(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", callback=lambda m: f"re: {m.content}")
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("note", "hi", source="sender", destination="b")
            await dispatcher.send(letter)
            reply = await inbox.receive()
    assert (reply.is_response, reply.id, reply.source, reply.content, reply.error) == (
        True,
        letter.id,
        "b",
        "re: hi",
        None,
    )


@pytest.mark.anyio
async def test_handler_returning_none_sends_nothing_back(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    handled: list[Any] = []
    listener(dispatcher, "b", callback=lambda m: handled.append(m.content))
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("note", "hi", source="sender", destination="b"))
            await barrier(dispatcher, inbox)
    assert handled == ["hi"]


@pytest.mark.anyio
async def test_send_to_nobody_returns_the_letter_undeliverable_to_its_source(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("note", {"n": 1}, source="sender", destination="nobody")
            await dispatcher.send(letter)
            returned = await inbox.receive()
    assert_returned(returned, letter, "undeliverable")
    assert returned.content == {"n": 1}
    assert returned.is_response is True
    assert dispatcher.stats.returned == 1


@pytest.mark.anyio
async def test_send_to_nobody_without_a_source_raises_undeliverable(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_send_to_nobody_raises(dispatcher, Message("note", destination="nobody"))


@pytest.mark.anyio
async def test_send_to_nobody_from_an_unregistered_source_raises_undeliverable(
    dispatcher: MessageDispatcher,
) -> None:
    await assert_send_to_nobody_raises(
        dispatcher, Message("note", source="ghost", destination="nobody")
    )


@pytest.mark.anyio
async def test_response_required_without_reply_returns_timeout_letter(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message], streams: Streams
) -> None:
    listener(dispatcher, "b", queue=streams[0])  # takes the letter and never answers
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("note", source="sender", destination="b", response_required=True)
            await dispatcher.send(letter, reply_timeout=0.05)
            returned = await inbox.receive()
    assert_returned(returned, letter, "timeout")
    assert dispatcher.stats.timeouts == 1


@pytest.mark.anyio
async def test_response_required_and_handler_raises_returns_handler_error_letter(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", callback=fail)
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("note", source="sender", destination="b", response_required=True)
            await dispatcher.send(letter)
            returned = await inbox.receive()
    assert_returned(returned, letter, "handler_error")
    assert "bad letter" in str(returned.error)


@pytest.mark.anyio
async def test_plain_send_whose_handler_raises_sends_nothing_back(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", callback=fail)
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("note", source="sender", destination="b"))
            await barrier(dispatcher, inbox)
    assert dispatcher.stats.handler_errors == 1
    assert dispatcher.stats.returned == 0


@pytest.mark.anyio
async def test_sender_rules_never_answer_a_reply(
    dispatcher: MessageDispatcher, streams: Streams
) -> None:
    received_by_b: list[str] = []
    inbox_in, inbox = streams

    def b_rule(message: Message) -> Any:
        received_by_b.append(message.type)
        return "pong"

    thankful_sender(dispatcher, inbox_in)
    listener(dispatcher, "b", callback=b_rule)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("ping", source="sender", destination="b"))
            assert (await inbox.receive()).content == "pong"
            await dispatcher.send(Message("barrier", source="sender", destination="b"))
            assert (await inbox.receive()).type == "barrier"
            with pytest.raises(anyio.WouldBlock):
                inbox.receive_nowait()
    assert received_by_b == ["ping", "barrier"]
    assert dispatcher.stats.as_dict() == dict.fromkeys(dispatcher.stats.as_dict(), 0)


@pytest.mark.anyio
async def test_sender_rules_never_answer_a_returned_letter(
    dispatcher: MessageDispatcher, streams: Streams
) -> None:
    inbox_in, inbox = streams
    thankful_sender(dispatcher, inbox_in)
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("note", source="sender", destination="nobody"))
            returned = await inbox.receive()
            await dispatcher.send(Message("barrier", source="sender", destination="barrier"))
            assert (await inbox.receive()).type == "barrier"
            with pytest.raises(anyio.WouldBlock):
                inbox.receive_nowait()
    assert returned.error is not None
    assert returned.error.startswith("undeliverable")
    assert dispatcher.stats.returned == 1
    assert dispatcher.stats.dropped_replies == 0
    assert dispatcher.stats.handler_errors == 0


@pytest.mark.anyio
async def test_group_send_delivers_a_distinct_copy_to_every_subscriber(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    copies: dict[str, Message] = {}

    def keep(name: str) -> Any:
        def rule(message: Message) -> Any:
            copies[name] = message
            return f"{name} got {message.content}"

        return rule

    for name in ("x", "y", "z"):
        listener(dispatcher, name, callback=keep(name))
        dispatcher.subscribe("g", name)
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("news", "it", source="sender", group="g")
            await dispatcher.send(letter)
            replies = [await inbox.receive() for _ in range(3)]
    assert sorted(copies) == ["x", "y", "z"]
    assert len({id(copy) for copy in copies.values()}) == 3
    assert all(copy is not letter for copy in copies.values())
    assert all((c.id, c.group, c.content) == (letter.id, "g", "it") for c in copies.values())
    assert sorted((r.source, r.content) for r in replies) == [
        ("x", "x got it"),
        ("y", "y got it"),
        ("z", "z got it"),
    ]
    assert all(r.id == letter.id and r.is_response for r in replies)


@pytest.mark.anyio
async def test_stats_returned_counts_every_returned_letter(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "raiser", callback=fail)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("a", source="sender", destination="nobody"))
            await dispatcher.send(Message("b", source="sender", group="no-such-group"))
            await dispatcher.send(
                Message("c", source="sender", destination="raiser", response_required=True)
            )
            errors = sorted([(await inbox.receive()).error or "" for _ in range(3)])
    assert [e.partition(":")[0] for e in errors] == [
        "handler_error",
        "undeliverable",
        "undeliverable",
    ]
    assert dispatcher.stats.returned == 3


@pytest.mark.anyio
async def test_response_required_group_letter_declined_by_all_returns_one_undeliverable_letter(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    for name in ("x", "y"):
        listener(dispatcher, name, type="other", callback=lambda m: "never")
        dispatcher.subscribe("g", name)
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("news", "it", source="sender", group="g", response_required=True)
            await dispatcher.send(letter, reply_timeout=30)
            returned = await inbox.receive()
            await barrier(dispatcher, inbox)
    assert_returned(returned, letter, "undeliverable")
    assert dispatcher.stats.returned == 1


@pytest.mark.anyio
async def test_response_required_group_letter_answered_by_one_returns_only_the_answer(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "picky", type="other", callback=lambda m: "never")
    listener(dispatcher, "willing", callback=lambda m: "yes")
    dispatcher.subscribe("g", "picky")
    dispatcher.subscribe("g", "willing")
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("news", "it", source="sender", group="g", response_required=True)
            await dispatcher.send(letter, reply_timeout=30)
            reply = await inbox.receive()
            await barrier(dispatcher, inbox)
    assert (reply.source, reply.content, reply.error) == ("willing", "yes", None)
    assert dispatcher.stats.returned == 0


@pytest.mark.anyio
async def test_a_letters_answer_with_no_source_listener_is_counted_dropped(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "echo", callback=lambda m: m.content)
    with anyio.fail_after(5):
        async with dispatcher:
            await dispatcher.send(Message("ping", 1, destination="echo"))
            # Handled after the letter (same destination, queue order): the letter is done.
            reply = await dispatcher.request(Message("ping", 2, destination="echo"))
    assert reply.content == 2
    assert dispatcher.stats.dropped_replies == 1
    assert dispatcher.stats.late_replies == 0


@pytest.mark.anyio
async def test_a_letters_answer_under_an_expired_id_is_counted_late_not_dropped(
    dispatcher: MessageDispatcher,
) -> None:
    listener(dispatcher, "silent", callback=lambda m: DEFERRED)
    listener(dispatcher, "echo", callback=lambda m: m.content)
    with anyio.fail_after(5):
        async with dispatcher:
            with pytest.raises(ReplyTimeoutError):
                await dispatcher.request(Message("ping", id=42, destination="silent"), timeout=0.05)
            await dispatcher.send(Message("ping", 1, id=42, destination="echo"))
            await dispatcher.request(Message("ping", 2, destination="echo"))
    assert dispatcher.stats.late_replies == 1
    assert dispatcher.stats.dropped_replies == 0


@pytest.mark.anyio
async def test_a_second_reply_to_an_answered_response_required_letter_is_late(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    kept: list[Message] = []

    def keep(message: Message) -> Any:
        kept.append(message)
        return DEFERRED

    listener(dispatcher, "b", callback=keep)
    register_barrier(dispatcher)
    with anyio.fail_after(5):
        async with dispatcher:
            letter = Message("note", "hi", source="sender", destination="b", response_required=True)
            await dispatcher.send(letter)
            await barrier(dispatcher, inbox)  # b has deferred it
            await dispatcher.reply(kept[0], "first")
            first = await inbox.receive()
            await dispatcher.reply(kept[0], "second")
            await barrier(dispatcher, inbox)
    assert (first.id, first.content) == (letter.id, "first")
    assert dispatcher.stats.late_replies == 1


@pytest.mark.anyio
async def test_a_reply_to_a_plain_letter_with_an_id_of_the_senders_choice_reaches_its_source(
    dispatcher: MessageDispatcher, inbox: MemoryObjectReceiveStream[Message]
) -> None:
    listener(dispatcher, "b", callback=lambda m: f"re: {m.content}")
    with anyio.fail_after(5):
        async with dispatcher:
            for chosen in (7, 8, "note-1"):
                await dispatcher.send(
                    Message("note", chosen, id=chosen, source="sender", destination="b")
                )
                reply = await inbox.receive()
                assert (reply.id, reply.content) == (chosen, f"re: {chosen}")
    assert dispatcher.stats.late_replies == 0
