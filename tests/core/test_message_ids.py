"""Message IDs the dispatcher assigns: unique, and small enough for JSON's fast path."""

from __future__ import annotations

from dispatchio import Message, MessageDispatcher, make_plugin_manager
from dispatchio._message import stamp
from dispatchio._wire import decode, encode_message, message_from


def test_assigned_ids_are_signed_64_bit_integers_that_count_up() -> None:
    dispatcher = MessageDispatcher("p", plugins=make_plugin_manager(load_entrypoints=False))
    ids = [next(dispatcher._ids) for _ in range(3)]
    assert all(0 <= i < 2**63 - 2**40 for i in ids)  # room left for 2**40 messages
    assert ids == list(range(ids[0], ids[0] + 3))


def test_two_dispatchers_start_their_ids_apart() -> None:
    plugins = make_plugin_manager(load_entrypoints=False)
    starts = {next(MessageDispatcher("p", plugins=plugins)._ids) for _ in range(5)}
    assert len(starts) == 5


def test_an_assigned_id_crosses_the_wire_unchanged() -> None:
    dispatcher = MessageDispatcher("p", plugins=make_plugin_manager(load_entrypoints=False))
    message = Message("ping", 1, destination="x")
    stamp(message, dispatcher._ids, "p")
    assert message_from(decode(encode_message(message))).id == message.id
