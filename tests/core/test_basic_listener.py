"""BasicMessageListener: building the filtering table, matching, and the async pathway."""

from __future__ import annotations

import dataclasses
import functools
import queue
from collections.abc import Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from dispatchio import (
    DEFERRED,
    UNHANDLED,
    Action,
    BasicMessageListener,
    Message,
)
from tests.core._helpers import RecordingListener


@dataclasses.dataclass
class Card:
    suit: str
    rank: int


def returns(value: Any) -> Any:
    """A sync callback that returns ``value`` whatever the message."""
    return lambda message: value


async def async_echo(message: Message) -> Any:
    await anyio.lowlevel.checkpoint()
    return ("async", message.content)


async def async_tagged(tag: str, message: Message) -> Any:
    await anyio.lowlevel.checkpoint()
    return (tag, message.content)


class AsyncCallable:
    async def __call__(self, message: Message) -> Any:
        await anyio.lowlevel.checkpoint()
        return "called"


class SyncCallable:
    def __call__(self, message: Message) -> Any:
        return "called"


def sync_tagged(tag: str, message: Message) -> Any:
    return (tag, message.content)


# ---------------------------------------------------------------- add_rule validation


def test_add_rule_without_an_action_raises_value_error() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BasicMessageListener("l").add_rule(type="a")


def test_add_rule_with_two_actions_raises_value_error() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BasicMessageListener("l").add_rule(callback=returns(1), queue=queue.Queue())


def test_add_rule_with_non_callable_callback_raises_type_error() -> None:
    with pytest.raises(TypeError, match="callable"):
        BasicMessageListener("l").add_rule(callback="not callable")  # type: ignore[arg-type]


def test_add_rule_with_queue_lacking_put_nowait_and_send_nowait_raises_type_error() -> None:
    with pytest.raises(TypeError, match="put_nowait"):
        BasicMessageListener("l").add_rule(queue=[])  # type: ignore[arg-type]


def test_add_rule_with_non_listener_raises_type_error() -> None:
    with pytest.raises(TypeError, match="MessageListener"):
        BasicMessageListener("l").add_rule(listener=object())  # type: ignore[arg-type]


def test_add_rule_chaining_a_listener_to_itself_raises_value_error() -> None:
    listener = BasicMessageListener("l")
    with pytest.raises(ValueError, match="itself"):
        listener.add_rule(listener=listener)


def test_rejected_add_rule_leaves_the_table_unchanged() -> None:
    listener = BasicMessageListener("l")
    with pytest.raises(ValueError, match="exactly one"):
        listener.add_rule()
    assert listener.rules == ()


# ---------------------------------------------------------------- table order


def test_rules_are_tried_in_order_and_first_match_wins() -> None:
    listener = BasicMessageListener("l")
    listener.add_rule(type="b", callback=returns("only b"))
    listener.add_rule(callback=returns("first any"))
    listener.add_rule(callback=returns("second any"))
    assert listener.handle_message_sync(Message("a")) == "first any"
    assert listener.handle_message_sync(Message("b")) == "only b"


def test_add_rule_with_index_inserts_at_that_position() -> None:
    listener = BasicMessageListener("l")
    last = listener.add_rule(callback=returns("last"))
    first = listener.add_rule(callback=returns("first"), index=0)
    assert listener.rules == (first, last)
    assert listener.handle_message_sync(Message("a")) == "first"


def test_add_rule_returns_the_rule_added_to_the_table() -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(type="a", callback=returns(1))
    assert listener.rules == (rule,)
    assert rule.type == "a"
    assert rule.action is Action.CALLBACK


def test_remove_rule_takes_it_out_of_the_table() -> None:
    listener = BasicMessageListener("l")
    first = listener.add_rule(callback=returns("first"))
    second = listener.add_rule(callback=returns("second"))
    listener.remove_rule(first)
    assert listener.rules == (second,)
    assert listener.handle_message_sync(Message("a")) == "second"


def test_remove_rule_of_unknown_rule_raises_value_error() -> None:
    other = BasicMessageListener("other")
    rule = other.add_rule(callback=returns(1))
    with pytest.raises(ValueError, match="not a rule"):
        BasicMessageListener("l").remove_rule(rule)


# ---------------------------------------------------------------- criteria


@pytest.mark.parametrize(
    ("criteria", "matching", "other"),
    [
        ({"type": "deal"}, Message("deal"), Message("fold")),
        ({"source": 1}, Message("a", source=1), Message("a", source=2)),
        ({"destination": "p1"}, Message("a", destination="p1"), Message("a", destination="p2")),
        ({"group": "table"}, Message("a", group="table"), Message("a", group="bar")),
        (
            {"where": lambda m: m.content > 10},
            Message("a", 11),
            Message("a", 10),
        ),
    ],
    ids=["type", "source", "destination", "group", "where"],
)
def test_rule_matches_on_a_single_criterion(
    criteria: dict[str, Any], matching: Message, other: Message
) -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(**criteria, callback=returns(1))
    assert listener.match(matching) is rule
    assert listener.match(other) is None


def test_criteria_are_and_combined() -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(type="deal", source="dealer", callback=returns(1))
    assert listener.match(Message("deal", source="dealer")) is rule
    assert listener.match(Message("deal", source="player")) is None
    assert listener.match(Message("fold", source="dealer")) is None


def test_content_path_follows_dict_keys() -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(content={"card.suit": "hearts"}, callback=returns(1))
    assert listener.match(Message("a", {"card": {"suit": "hearts"}})) is rule
    assert listener.match(Message("a", {"card": {"suit": "spades"}})) is None


def test_content_path_follows_attributes() -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(content={"card.suit": "hearts"}, callback=returns(1))
    assert listener.match(Message("a", {"card": Card("hearts", 10)})) is rule
    assert listener.match(Message("a", {"card": Card("spades", 10)})) is None


def test_content_path_can_start_with_an_attribute_of_the_content() -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(content={"rank": 10}, callback=returns(1))
    assert listener.match(Message("a", Card("hearts", 10))) is rule
    assert listener.match(Message("a", Card("hearts", 9))) is None


def test_content_criteria_all_must_hold() -> None:
    listener = BasicMessageListener("l")
    rule = listener.add_rule(content={"suit": "hearts", "rank": 10}, callback=returns(1))
    assert listener.match(Message("a", {"suit": "hearts", "rank": 10})) is rule
    assert listener.match(Message("a", {"suit": "hearts", "rank": 9})) is None


@pytest.mark.parametrize(
    "content",
    [None, {}, {"card": {}}, {"card": Card("hearts", 1)}, {"card": "hearts"}],
    ids=["no-content", "empty-dict", "missing-key", "missing-attribute", "path-into-str"],
)
def test_content_path_that_is_missing_does_not_match(content: Any) -> None:
    listener = BasicMessageListener("l")
    listener.add_rule(content={"card.colour": None}, callback=returns(1))
    assert listener.match(Message("a", content)) is None


def test_content_that_is_not_a_mapping_raises_type_error_saying_what_content_takes() -> None:
    listener = BasicMessageListener("l")
    with pytest.raises(TypeError, match=r"content= takes a mapping of dotted paths.*'hearts'"):
        listener.add_rule(content="hearts", callback=returns(1))  # type: ignore[arg-type]
    assert listener.rules == ()


@pytest.mark.parametrize("path", [1, "", None], ids=["int", "empty", "none"])
def test_content_path_that_is_not_a_non_empty_str_raises_type_error(path: Any) -> None:
    listener = BasicMessageListener("l")
    with pytest.raises(TypeError, match="content= paths are non-empty strings"):
        listener.add_rule(content={path: "hearts"}, callback=returns(1))
    assert listener.rules == ()


def test_match_returns_none_on_empty_table() -> None:
    assert BasicMessageListener("l").match(Message("a")) is None


# ---------------------------------------------------------------- unmatched


def test_unmatched_message_is_declined_with_unhandled_on_the_sync_path() -> None:
    listener = BasicMessageListener("l")
    listener.add_rule(type="b", callback=returns(1))
    assert listener.handle_message_sync(Message("a")) is UNHANDLED


def test_unmatched_message_increments_unmatched_count() -> None:
    listener = BasicMessageListener("l")
    listener.handle_message_sync(Message("a"))
    listener.handle_message_sync(Message("a"))
    assert listener.unmatched_count == 2


def test_matched_message_does_not_increment_unmatched_count() -> None:
    listener = BasicMessageListener("l")
    listener.add_rule(callback=returns(1))
    listener.handle_message_sync(Message("a"))
    assert listener.unmatched_count == 0


# ---------------------------------------------------------------- async detection


@pytest.mark.parametrize(
    "callback",
    [async_echo, functools.partial(async_tagged, "t"), AsyncCallable()],
    ids=["async-def", "partial-of-async-def", "async-dunder-call"],
)
def test_async_callbacks_are_detected(callback: Any) -> None:
    rule = BasicMessageListener("l").add_rule(callback=callback)
    assert rule.action is Action.ASYNC_CALLBACK


@pytest.mark.parametrize(
    "callback",
    [returns(1), functools.partial(sync_tagged, "t"), SyncCallable(), print],
    ids=["lambda", "partial-of-def", "sync-dunder-call", "builtin"],
)
def test_sync_callbacks_are_detected(callback: Any) -> None:
    rule = BasicMessageListener("l").add_rule(callback=callback)
    assert rule.action is Action.CALLBACK


def test_queue_and_listener_rules_have_their_actions() -> None:
    listener = BasicMessageListener("l")
    assert listener.add_rule(queue=queue.Queue()).action is Action.QUEUE
    assert listener.add_rule(listener=RecordingListener()).action is Action.LISTENER


# ---------------------------------------------------------------- async pathway


@pytest.mark.anyio
async def test_async_path_returns_sync_callback_value() -> None:
    with anyio.fail_after(5):
        listener = BasicMessageListener("l")
        listener.add_rule(callback=lambda m: m.content * 2)
        assert await listener.handle_message(Message("a", 21)) == 42


@pytest.mark.anyio
async def test_async_path_returns_async_callback_value() -> None:
    with anyio.fail_after(5):
        listener = BasicMessageListener("l")
        listener.add_rule(callback=async_echo)
        assert await listener.handle_message(Message("a", 5)) == ("async", 5)


@pytest.mark.anyio
async def test_async_path_awaits_a_coroutine_returned_by_a_sync_callback() -> None:
    def make_coroutine(message: Message) -> Coroutine[Any, Any, Any]:
        return async_echo(message)

    with anyio.fail_after(5):
        listener = BasicMessageListener("l")
        rule = listener.add_rule(callback=make_coroutine)
        assert rule.action is Action.CALLBACK
        assert await listener.handle_message(Message("a", 3)) == ("async", 3)


@pytest.mark.anyio
async def test_async_path_puts_message_on_thread_queue_and_returns_deferred() -> None:
    with anyio.fail_after(5):
        messages: queue.Queue[Message] = queue.Queue()
        listener = BasicMessageListener("l")
        listener.add_rule(queue=messages)
        message = Message("a", 1)
        assert await listener.handle_message(message) is DEFERRED
        assert messages.get_nowait() is message


@pytest.mark.anyio
async def test_async_path_sends_message_to_memory_stream_and_returns_deferred() -> None:
    with anyio.fail_after(5):
        send, receive = anyio.create_memory_object_stream[Message](1)
        async with send, receive:
            listener = BasicMessageListener("l")
            listener.add_rule(queue=send)
            message = Message("a", 1)
            assert await listener.handle_message(message) is DEFERRED
            assert await receive.receive() is message


@pytest.mark.anyio
async def test_async_path_of_chained_listener_is_its_async_pathway() -> None:
    with anyio.fail_after(5):
        chained = RecordingListener()
        listener = BasicMessageListener("l")
        listener.add_rule(listener=chained)
        message = Message("a")
        assert await listener.handle_message(message) == "from async"
        assert chained.calls == [("async", message)]


@pytest.mark.anyio
async def test_async_path_declines_unmatched_message_and_counts_it() -> None:
    with anyio.fail_after(5):
        listener = BasicMessageListener("l")
        listener.add_rule(type="b", callback=returns(1))
        assert await listener.handle_message(Message("a")) is UNHANDLED
        assert listener.unmatched_count == 1


@pytest.mark.anyio
async def test_async_path_propagates_callback_exception() -> None:
    class Boom(ValueError):
        pass

    async def explode(message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        raise Boom("bang")

    with anyio.fail_after(5):
        listener = BasicMessageListener("l")
        listener.add_rule(callback=explode)
        with pytest.raises(Boom, match="bang"):
            await listener.handle_message(Message("a"))


def test_repr_names_id_and_rule_count() -> None:
    listener = BasicMessageListener("dealer")
    listener.add_rule(callback=returns(1))
    assert repr(listener) == "BasicMessageListener(id='dealer', rules=1)"
