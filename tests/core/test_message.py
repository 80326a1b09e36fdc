"""Message: fields, repr, equality, evolve, the JSON wire form, and check_message."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from dispatchio import (
    DEFERRED,
    UNHANDLED,
    DeliveryError,
    HandlerError,
    InvalidMessageError,
    Message,
    ReplyTimeoutError,
    UndeliverableError,
    error_from_message,
)
from dispatchio._message import check_message

# ---------------------------------------------------------------- fields and defaults


def test_message_defaults_leave_optional_fields_unset() -> None:
    message = Message("ping")
    assert message.type == "ping"
    assert message.content is None
    assert message.id is None
    assert message.source is None
    assert message.destination is None
    assert message.group is None
    assert message.process is None
    assert message.response_required is False
    assert message.is_response is False
    assert message.blocking is False
    assert message.error is None


def test_message_keeps_every_field_given() -> None:
    message = Message(
        "deal",
        {"card": "A"},
        id=7,
        source="dealer",
        destination=3,
        group="table",
        process="proc-1",
        response_required=True,
        is_response=True,
        blocking=True,
        error="timeout: late",
    )
    assert message.to_dict() == {
        "type": "deal",
        "content": {"card": "A"},
        "id": 7,
        "source": "dealer",
        "destination": 3,
        "group": "table",
        "process": "proc-1",
        "response_required": True,
        "is_response": True,
        "blocking": True,
        "error": "timeout: late",
    }


def test_message_is_slotted_and_rejects_unknown_attributes() -> None:
    message = Message("ping")
    with pytest.raises(AttributeError):
        message.colour = "red"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- repr


def test_repr_shows_type_and_only_fields_that_are_set() -> None:
    message = Message("deal", [1, 2], id=5, destination="p1", blocking=True)
    assert repr(message) == "Message('deal', content=[1, 2], id=5, destination='p1', blocking=True)"


def test_repr_of_bare_message_shows_only_type() -> None:
    assert repr(Message("ping")) == "Message('ping')"


def test_deferred_and_unhandled_reprs_name_the_package() -> None:
    assert repr(DEFERRED) == "dispatchio.DEFERRED"
    assert repr(UNHANDLED) == "dispatchio.UNHANDLED"


# ---------------------------------------------------------------- equality


def test_messages_with_equal_fields_are_equal() -> None:
    assert Message("a", {"x": 1}, id=1, source=2) == Message("a", {"x": 1}, id=1, source=2)


def test_messages_differing_in_one_field_are_not_equal() -> None:
    assert Message("a", id=1) != Message("a", id=2)


def test_message_is_not_equal_to_a_non_message() -> None:
    assert Message("a") != {"type": "a"}


def test_message_is_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Message("a"))


# ---------------------------------------------------------------- evolve


def test_evolve_returns_a_changed_copy_and_leaves_the_original() -> None:
    original = Message("ask", {"q": 1}, id=9, source="a", destination="b")
    changed = original.evolve(destination="c", is_response=True)
    assert changed is not original
    assert changed.destination == "c"
    assert changed.is_response is True
    assert changed.id == 9
    assert changed.source == "a"
    assert changed.content is original.content  # a shallow copy
    assert original.destination == "b"
    assert original.is_response is False


def test_evolve_rejects_an_unknown_field() -> None:
    with pytest.raises(TypeError):
        Message("a").evolve(colour="red")


# ---------------------------------------------------------------- JSON round trip


@pytest.mark.parametrize(
    "message",
    [
        Message("a", 1, id=1, source=2, destination=3, process=4),
        Message("b", "text", id="m-1", source="s", group="g", process="p"),
        Message(
            "c",
            {"hand": [{"suit": "hearts", "rank": 10}, None], "ok": True, "n": 1.5},
            id=12,
            source="x",
            destination="y",
            response_required=True,
            is_response=True,
            blocking=True,
            error="handler_error: boom",
        ),
    ],
    ids=["ints", "strs", "nested-content-and-flags"],
)
def test_json_round_trip_reproduces_the_message(message: Message) -> None:
    assert Message.from_json(message.to_json()) == message


def test_from_json_accepts_str_as_well_as_bytes() -> None:
    message = Message("a", [1], id=1)
    assert Message.from_json(message.to_json().decode()) == message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"id": 1}', "type"),
        (b'{"type": "a", "id": 1, "blocking": "yes"}', "blocking"),
        (b'{"type": "a", "id": true}', "id"),
        (b'{"type": "a", "id": 1, "colour": "red"}', "colour"),
    ],
    ids=["missing-type", "non-bool-blocking", "bool-id", "unknown-extra-field"],
)
def test_from_json_rejects_an_invalid_field_naming_it(data: bytes, field: str) -> None:
    with pytest.raises(InvalidMessageError, match=rf"\b{field}\b"):
        Message.from_json(data)


def test_from_json_rejects_bytes_that_are_not_json() -> None:
    with pytest.raises(InvalidMessageError, match="JSON"):
        Message.from_json(b"\x00not json at all")


def test_to_json_rejects_content_json_cannot_carry() -> None:
    with pytest.raises(InvalidMessageError, match="content"):
        Message("a", {"thing": object()}, id=1).to_json()


def test_to_json_rejects_an_invalid_field() -> None:
    message = Message("a", id=1, blocking="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="blocking"):
        message.to_json()


# ---------------------------------------------------------------- check_message


def test_check_message_accepts_a_well_formed_message() -> None:
    check_message(Message("a", {"x": 1}, id="m", source=1, destination="d", process=2))


@pytest.mark.parametrize("field", ["blocking", "response_required", "is_response"])
@pytest.mark.parametrize("value", ["yes", 1, None], ids=["str", "int", "none"])
def test_check_message_rejects_a_non_bool_flag(field: str, value: Any) -> None:
    message = Message("a")
    setattr(message, field, value)
    with pytest.raises(InvalidMessageError, match=rf"Message\.{field}"):
        check_message(message)


@pytest.mark.parametrize("value", ["", 5, None], ids=["empty", "int", "none"])
def test_check_message_rejects_a_type_that_is_not_a_non_empty_str(value: Any) -> None:
    with pytest.raises(InvalidMessageError, match=r"Message\.type"):
        check_message(Message(value))


@pytest.mark.parametrize("field", ["destination", "source", "group", "id", "process"])
@pytest.mark.parametrize("value", [True, 1.5, [1]], ids=["bool", "float", "list"])
def test_check_message_rejects_an_id_field_that_is_not_int_or_str(field: str, value: Any) -> None:
    message = Message("a")
    setattr(message, field, value)
    with pytest.raises(InvalidMessageError, match=rf"Message\.{field}"):
        check_message(message)


def test_check_message_rejects_a_non_str_error() -> None:
    message = Message("a", error=404)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match=r"Message\.error"):
        check_message(message)


def test_check_message_accepts_a_str_enum_as_type() -> None:
    class Kind(str, enum.Enum):
        DEAL = "deal"

    check_message(Message(Kind.DEAL, id=1))


def test_invalid_message_error_is_a_value_error() -> None:
    message = Message("a", blocking="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="blocking"):
        check_message(message)


# ---------------------------------------------------------------- error_from_message


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("undeliverable", UndeliverableError),
        ("timeout", ReplyTimeoutError),
        ("handler_error", HandlerError),
    ],
)
def test_error_from_message_maps_a_code_to_its_exception(
    code: str, cls: type[DeliveryError]
) -> None:
    message = Message("a", id=1, is_response=True, error=f"{code}: it went wrong")
    error = error_from_message(message)
    assert isinstance(error, cls)
    assert type(error) is cls
    assert error.detail == "it went wrong"
    assert error.message is message
    assert error.code == code


def test_error_from_message_gives_plain_delivery_error_for_an_unknown_code() -> None:
    message = Message("a", id=1, error="from_the_future: something new")
    error = error_from_message(message)
    assert isinstance(error, DeliveryError)
    assert type(error) is DeliveryError
    assert error.message is message


def test_error_from_message_returns_none_for_a_message_without_error() -> None:
    assert error_from_message(Message("a", id=1)) is None
