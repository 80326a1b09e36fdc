"""send_sync: the specification's synchronous table, cell by cell, and its edge cases.

Every test here is a plain ``def``: send_sync needs no event loop and no running dispatcher.
"""

from __future__ import annotations

import queue
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from dispatchio import (
    BasicMessageListener,
    InvalidMessageError,
    Message,
    MessageDispatcher,
    MessageListener,
    PluginManager,
    SyncSendError,
    UndeliverableError,
    hookimpl,
)
from tests.core._helpers import RecordingListener


class HandlerFailure(ValueError):
    """A user exception a handler raises."""


def listener_returning(dispatcher: MessageDispatcher, lid: str, value: Any) -> BasicMessageListener:
    listener = BasicMessageListener(lid)
    listener.add_rule(callback=lambda message: value)
    dispatcher.register(listener)
    return listener


# ---------------------------------------------------------------- the specification's table


def test_callback_return_value_is_returned_by_send_sync(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener("calc")
    listener.add_rule(type="double", callback=lambda m: m.content * 2)
    dispatcher.register(listener)
    assert dispatcher.send_sync(Message("double", 21, destination="calc")) == 42


def test_async_callback_raises_sync_send_error(dispatcher: MessageDispatcher) -> None:
    async def answer(message: Message) -> int:
        await anyio.lowlevel.checkpoint()
        return 1

    listener = BasicMessageListener("l")
    listener.add_rule(callback=answer)
    dispatcher.register(listener)
    with pytest.raises(SyncSendError, match="async callback"):
        dispatcher.send_sync(Message("ask", destination="l"))


def test_queue_rule_puts_message_on_queue_and_send_sync_returns_none(
    dispatcher: MessageDispatcher,
) -> None:
    messages: queue.Queue[Message] = queue.Queue()
    listener = BasicMessageListener("l")
    listener.add_rule(queue=messages)
    dispatcher.register(listener)
    message = Message("note", {"x": 1}, destination="l")
    assert dispatcher.send_sync(message) is None
    assert messages.get_nowait() is message
    assert messages.empty()


def test_chained_listener_gets_message_on_its_sync_pathway(
    dispatcher: MessageDispatcher,
) -> None:
    chained = RecordingListener()
    listener = BasicMessageListener("front")
    listener.add_rule(listener=chained)
    dispatcher.register(listener)
    message = Message("a", destination="front")
    assert dispatcher.send_sync(message) == "from sync"
    assert chained.calls == [("sync", message)]


# ---------------------------------------------------------------- no event loop needed


def test_send_sync_works_without_any_event_loop(plugins: PluginManager) -> None:
    dispatcher = MessageDispatcher("no-loop", plugins=plugins)
    listener_returning(dispatcher, "l", "pong")
    assert not dispatcher.running
    assert dispatcher.send_sync(Message("ping", destination="l")) == "pong"


def test_custom_listener_is_called_on_its_sync_pathway(dispatcher: MessageDispatcher) -> None:
    listener = dispatcher.register(RecordingListener("rec"))
    assert isinstance(listener, RecordingListener)
    message = Message("a", destination="rec")
    assert dispatcher.send_sync(message) == "from sync"
    assert listener.calls == [("sync", message)]


# ---------------------------------------------------------------- groups


def test_group_send_sync_returns_results_in_subscription_order(
    dispatcher: MessageDispatcher,
) -> None:
    for lid in ("c", "a", "b"):
        listener_returning(dispatcher, lid, f"from {lid}")
        dispatcher.subscribe("table", lid)
    assert dispatcher.send_sync(Message("deal", group="table")) == [
        "from c",
        "from a",
        "from b",
    ]


def test_group_send_sync_leaves_out_subscribers_that_declined(
    dispatcher: MessageDispatcher,
) -> None:
    listener_returning(dispatcher, "a", "from a")
    dispatcher.register(BasicMessageListener("no-rules"))
    listener_returning(dispatcher, "b", "from b")
    for lid in ("a", "no-rules", "b"):
        dispatcher.subscribe("table", lid)
    assert dispatcher.send_sync(Message("deal", group="table")) == ["from a", "from b"]
    assert dispatcher.stats.unmatched == 1


def test_group_send_sync_keeps_none_results(dispatcher: MessageDispatcher) -> None:
    listener_returning(dispatcher, "a", None)
    dispatcher.subscribe("g", "a")
    assert dispatcher.send_sync(Message("x", group="g")) == [None]


def test_group_send_sync_where_all_declined_returns_empty_list(
    dispatcher: MessageDispatcher,
) -> None:
    dispatcher.register(BasicMessageListener("a"))
    dispatcher.subscribe("g", "a")
    assert dispatcher.send_sync(Message("x", group="g")) == []


def test_group_send_sync_observed_by_a_plugin_gives_the_same_results(
    plugins: PluginManager,
) -> None:
    delivered: list[Any] = []

    class Observer:
        @hookimpl
        def dispatchio_message_delivered(
            self, dispatcher: MessageDispatcher, message: Message, listener: MessageListener
        ) -> None:
            delivered.append(listener.id)

    plugins.register(Observer())
    dispatcher = MessageDispatcher("observed", plugins=plugins)
    listener_returning(dispatcher, "a", "from a")
    dispatcher.register(BasicMessageListener("no-rules"))
    for lid in ("a", "no-rules"):
        dispatcher.subscribe("g", lid)
    assert dispatcher.send_sync(Message("x", group="g")) == ["from a"]
    assert delivered == ["a", "no-rules"]
    assert dispatcher.stats.unmatched == 1


def test_handler_unsubscribing_during_group_send_sync_does_not_break_iteration(
    dispatcher: MessageDispatcher,
) -> None:
    def leave_group(message: Message) -> str:
        dispatcher.unsubscribe("g", "a")
        dispatcher.unsubscribe("g", "b")
        return "a left"

    first = BasicMessageListener("a")
    first.add_rule(callback=leave_group)
    dispatcher.register(first)
    listener_returning(dispatcher, "b", "from b")
    listener_returning(dispatcher, "c", "from c")
    for lid in ("a", "b", "c"):
        dispatcher.subscribe("g", lid)
    # The send in progress goes to the members the group had when it started.
    assert dispatcher.send_sync(Message("x", group="g")) == ["a left", "from b", "from c"]
    assert dispatcher.subscribers("g") == ["c"]


# ---------------------------------------------------------------- undeliverable


def test_unknown_destination_raises_undeliverable_error(dispatcher: MessageDispatcher) -> None:
    with pytest.raises(UndeliverableError, match="nobody"):
        dispatcher.send_sync(Message("a", destination="nobody"))


def test_unknown_group_raises_undeliverable_error(dispatcher: MessageDispatcher) -> None:
    with pytest.raises(UndeliverableError, match="no subscribers"):
        dispatcher.send_sync(Message("a", group="nowhere"))


def test_group_emptied_by_unsubscribe_raises_undeliverable_error(
    dispatcher: MessageDispatcher,
) -> None:
    listener_returning(dispatcher, "a", 1)
    dispatcher.subscribe("g", "a")
    dispatcher.unsubscribe("g", "a")
    with pytest.raises(UndeliverableError, match="no subscribers"):
        dispatcher.send_sync(Message("x", group="g"))


def test_message_without_destination_or_group_raises_invalid_message_error_saying_so(
    dispatcher: MessageDispatcher,
) -> None:
    with pytest.raises(InvalidMessageError, match=r"Message\('ok'\) has neither a destination"):
        dispatcher.send_sync(Message("ok"))


def test_destination_that_declines_raises_undeliverable_error_and_counts_it(
    dispatcher: MessageDispatcher,
) -> None:
    listener = BasicMessageListener("picky")
    listener.add_rule(type="other", callback=lambda m: 1)
    dispatcher.register(listener)
    message = Message("a", destination="picky")
    with pytest.raises(UndeliverableError, match="no rule") as info:
        dispatcher.send_sync(message)
    assert info.value.message is message
    assert dispatcher.stats.unmatched == 1
    assert listener.unmatched_count == 1


# ---------------------------------------------------------------- handler errors and validation


def test_handler_exception_propagates_unchanged(dispatcher: MessageDispatcher) -> None:
    failure = HandlerFailure("bad card")

    def explode(message: Message) -> None:
        raise failure

    listener = BasicMessageListener("l")
    listener.add_rule(callback=explode)
    dispatcher.register(listener)
    with pytest.raises(HandlerFailure, match="bad card") as info:
        dispatcher.send_sync(Message("a", destination="l"))
    assert info.value is failure


def test_invalid_message_raises_before_any_handler_runs(dispatcher: MessageDispatcher) -> None:
    listener = dispatcher.register(RecordingListener("rec"))
    assert isinstance(listener, RecordingListener)
    message = Message("a", destination="rec", blocking="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="blocking"):
        dispatcher.send_sync(message)
    assert listener.calls == []
    assert message.id is None


def test_destination_and_group_both_set_raises_invalid_message_error(
    dispatcher: MessageDispatcher,
) -> None:
    listener = dispatcher.register(RecordingListener("rec"))
    assert isinstance(listener, RecordingListener)
    dispatcher.subscribe("g", "rec")
    with pytest.raises(InvalidMessageError, match="not both"):
        dispatcher.send_sync(Message("a", destination="rec", group="g"))
    assert listener.calls == []


# ---------------------------------------------------------------- id and process stamping


def test_send_sync_assigns_int_id_and_process_when_unset(dispatcher: MessageDispatcher) -> None:
    listener_returning(dispatcher, "l", 1)
    message = Message("a", destination="l")
    dispatcher.send_sync(message)
    assert type(message.id) is int
    assert message.process == dispatcher.process_id == "test-process"


def test_send_sync_keeps_user_chosen_id_and_process(dispatcher: MessageDispatcher) -> None:
    listener_returning(dispatcher, "l", 1)
    message = Message("a", destination="l", id="mine", process="elsewhere")
    dispatcher.send_sync(message)
    assert message.id == "mine"
    assert message.process == "elsewhere"


def test_handler_sees_the_assigned_id(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener("l")
    listener.add_rule(callback=lambda m: m.id)
    dispatcher.register(listener)
    message = Message("a", destination="l")
    assert dispatcher.send_sync(message) == message.id


def test_successive_sends_get_different_ids(dispatcher: MessageDispatcher) -> None:
    listener_returning(dispatcher, "l", 1)
    first, second = Message("a", destination="l"), Message("a", destination="l")
    dispatcher.send_sync(first)
    dispatcher.send_sync(second)
    assert first.id != second.id


def test_first_ids_of_two_dispatchers_differ(plugins: PluginManager) -> None:
    one = MessageDispatcher("one", plugins=plugins)
    two = MessageDispatcher("two", plugins=plugins)
    listener_returning(one, "l", 1)
    listener_returning(two, "l", 1)
    first, second = Message("a", destination="l"), Message("a", destination="l")
    one.send_sync(first)
    two.send_sync(second)
    assert first.id != second.id
