"""Message IDs the dispatcher assigns: unique, small enough for JSON's fast path, and
odd exactly for messages whose sender awaits replies."""

from __future__ import annotations

from dispatchio import Message, MessageDispatcher, make_plugin_manager
from dispatchio._message import MessageIds, stamp
from dispatchio._wire import encode_message, read


def _dispatcher() -> MessageDispatcher:
    return MessageDispatcher("p", plugins=make_plugin_manager(load_entrypoints=False))


def _assigned(ids: MessageIds, *, awaited: bool) -> int:
    message = Message("ping", 1, destination="x", response_required=awaited)
    stamp(message, ids, "p")
    assert isinstance(message.id, int)
    return message.id


def test_assigned_ids_are_signed_64_bit_integers_that_count_up() -> None:
    ids = _dispatcher()._ids
    plain = [_assigned(ids, awaited=False) for _ in range(3)]
    awaited = [_assigned(ids, awaited=True) for _ in range(3)]
    assert all(0 <= i < 2**63 - 2**40 for i in plain + awaited)  # room left for 2**40 messages
    assert plain == list(range(plain[0], plain[0] + 6, 2))
    assert awaited == list(range(awaited[0], awaited[0] + 6, 2))
    assert {i % 2 for i in plain} == {0}
    assert {i % 2 for i in awaited} == {1}
    assert len(set(plain + awaited)) == 6


def test_only_ids_assigned_to_awaited_messages_count_as_awaited() -> None:
    ids = MessageIds()
    assert not ids.is_awaited(ids.start + 1)  # not handed out yet
    plain = _assigned(ids, awaited=False)
    awaited = [_assigned(ids, awaited=True) for _ in range(3)]
    assert [ids.is_awaited(i) for i in awaited] == [True] * 3
    assert not ids.is_awaited(plain)
    assert not ids.is_awaited(awaited[-1] + 2)  # the next one, not handed out yet
    assert not ids.is_awaited(ids.start - 1)
    assert not ids.is_awaited(str(awaited[0]))
    assert not ids.is_awaited(True)


def test_an_id_the_sender_chose_is_kept() -> None:
    ids = MessageIds()
    message = Message("ping", 1, id=7, destination="x", response_required=True)
    stamp(message, ids, "p")
    assert message.id == 7
    assert not ids.is_awaited(7)


def test_two_dispatchers_start_their_ids_apart() -> None:
    starts = {_assigned(_dispatcher()._ids, awaited=False) for _ in range(5)}
    assert len(starts) == 5


def test_an_assigned_id_crosses_the_wire_unchanged() -> None:
    ids = _dispatcher()._ids
    for awaited in (False, True):
        message = Message("ping", 1, destination="x", response_required=awaited)
        stamp(message, ids, "p")
        decoded = read(encode_message(message))
        assert isinstance(decoded, Message)
        assert decoded.id == message.id
