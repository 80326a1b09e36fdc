"""The message frame of `dispatchio._wire`: what `read` builds is what was encoded."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dispatchio import Message
from dispatchio._wire import MSG, WireError, encode, encode_message, read


@pytest.mark.parametrize(
    ("response_required", "is_response", "blocking"),
    list(itertools.product((False, True), repeat=3)),
)
def test_read_builds_the_message_that_was_encoded_with_every_slot_set(
    response_required: bool, is_response: bool, blocking: bool
) -> None:
    sent = Message(
        "deal",
        {"cards": [1, "two", None, 2.5, True]},
        id=7,
        source="dealer",
        destination="seat-1",
        process="table",
        response_required=response_required,
        is_response=is_response,
        blocking=blocking,
        error="timeout: late" if is_response else None,
    )
    got = read(encode_message(sent))
    assert isinstance(got, Message)
    assert got == sent
    # read() fills the slots itself (no __init__): a slot it forgot would be unset,
    # and reading an unset slot raises AttributeError.
    slots = {name: getattr(got, name) for name in Message.__slots__}
    assert slots["_hold"] is None


def test_read_keeps_a_group_message_and_ignores_fields_a_newer_peer_added() -> None:
    frame = encode(MSG, "tick", 1, "i-1", None, None, "g", "p", 0, None, "extra", 42)
    got = read(frame)
    assert got == Message("tick", 1, id="i-1", group="g", process="p")


def test_read_returns_any_other_kind_as_its_array() -> None:
    assert read(b"[5]") == [5]
    assert read(b'[99, "future"]') == [99, "future"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([MSG, "t", None, 1, None, "d", None, "p", 0], "10 fields, got 9"),
        ([MSG, "", None, 1, None, "d", None, "p", 0, None], "type must be a non-empty"),
        ([MSG, "t", None, 1.5, None, "d", None, "p", 0, None], "id must be an int or a"),
        ([MSG, "t", None, True, None, "d", None, "p", 0, None], "id must be an int or a"),
        ([MSG, "t", None, 1, [], "d", None, "p", 0, None], "source must be"),
        ([MSG, "t", None, 1, None, False, None, "p", 0, None], "destination must be"),
        ([MSG, "t", None, 1, None, None, 1.0, "p", 0, None], "group must be"),
        ([MSG, "t", None, 1, None, "d", None, {}, 0, None], "process must be"),
        ([MSG, "t", None, 1, None, "d", None, "p", 8, None], "flags must be an int from 0"),
        ([MSG, "t", None, 1, None, "d", None, "p", True, None], "flags must be an int from 0"),
        ([MSG, "t", None, 1, None, "d", None, "p", 0, 5], "error must be a string"),
        ([MSG, "t", None, 1, None, "d", "g", "p", 0, None], "destination or group, not both"),
        ([True, "t"], "starting with its kind"),
        ({"kind": 0}, "starting with its kind"),
    ],
)
def test_read_refuses_a_field_of_the_wrong_kind_naming_it(fields: Any, error: str) -> None:
    with pytest.raises(WireError, match=error):
        read(encode(*fields) if isinstance(fields, list) else b'{"kind": 0}')


def test_read_refuses_what_is_not_json() -> None:
    with pytest.raises(WireError, match="not JSON"):
        read(b"[0, ")
