"""The frames processes exchange: one JSON array each, never pickle.

A frame's first element is its kind. A message is a positional array (cheaper to encode
and decode than an object: about 0.4 + 1.1 us here, against 10 us through the pydantic
model), validated on arrival with the same identity tests as `stamp`. Unknown kinds are
ignored so a newer peer can add some.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import pydantic_core

from dispatchio._errors import InvalidMessageError, MessageTooLargeError
from dispatchio._message import ListenerId, Message

MESH_VERSION: Final = 1

MSG: Final = 0  # [0, type, content, id, source, destination, group, process, flags, error]
FANOUT: Final = 1  # [1, id, n]: n copies were made of a group message
SNAPSHOT: Final = 2  # [2, version, seq, [lid...], [[group, [lid...]]...], [[proc, inc, urls]...]]
DELTA: Final = 3  # [3, seq, op, lid, group]
SNAPSHOT_REQUEST: Final = 4  # [4]
HEARTBEAT: Final = 5  # [5]
GOODBYE: Final = 6  # [6, reason]
MEMBERS: Final = 7  # [7, [[proc, inc, urls]...]]

_RR: Final = 1
_IS_RESPONSE: Final = 2
_BLOCKING: Final = 4

# (response_required, is_response, blocking) for each value of the flags field.
_FLAGS: Final = tuple(
    (bool(f & _RR), bool(f & _IS_RESPONSE), bool(f & _BLOCKING)) for f in range(8)
)
_from_json = pydantic_core.from_json
_new = object.__new__

HEARTBEAT_FRAME: Final = pydantic_core.to_json([HEARTBEAT])
SNAPSHOT_REQUEST_FRAME: Final = pydantic_core.to_json([SNAPSHOT_REQUEST])


class WireError(ValueError):
    """A frame that is not valid JSON or not a valid dispatchio frame."""


def check_content(value: Any, path: str = "Message.content") -> None:
    """Check that ``value`` is plain JSON data, which is all that crosses a process boundary.

    Raises:
        InvalidMessageError: naming the path of the first offending value.
    """
    cls = value.__class__
    if value is None or cls is str or cls is bool or cls is int:
        return
    if cls is float:
        if not math.isfinite(value):
            raise InvalidMessageError(f"{path} is {value!r}; JSON has no NaN or infinity")
        return
    if cls is list:
        for index, item in enumerate(value):
            check_content(item, f"{path}[{index}]")
        return
    if cls is tuple:
        # JSON has no tuple: it would arrive as a list, unequal to what was sent.
        raise InvalidMessageError(
            f"{path} is a tuple; JSON has only lists, so it would arrive as a list: send a list"
        )
    if cls is dict:
        for key, item in value.items():
            if key.__class__ is not str:
                raise InvalidMessageError(f"{path} has the key {key!r}; JSON keys are strings")
            check_content(item, f"{path}[{key!r}]")
        return
    raise InvalidMessageError(
        f"{path} is a {cls.__name__}; only JSON values (dict with str keys, list, str, int,"
        " finite float, bool, None) can cross processes"
    )


def encode_message(message: Message, limit: int = sys.maxsize) -> bytes:
    """Encode a validated message into a frame of at most ``limit`` bytes.

    The sends of `MessageDispatcher` call this directly with the mesh's
    ``max_message_size`` (it is their hot path: no layer in between).

    Raises:
        InvalidMessageError: the content is not plain JSON data (the error names the path).
        MessageTooLargeError: the frame would exceed ``limit``.
    """
    content = message.content
    cls = content.__class__
    if cls is not str and cls is not int and content is not None:
        check_content(content)
    flags = (
        (_RR if message.response_required else 0)
        | (_IS_RESPONSE if message.is_response else 0)
        | (_BLOCKING if message.blocking else 0)
    )
    frame = pydantic_core.to_json(
        [
            MSG,
            message.type,
            content,
            message.id,
            message.source,
            message.destination,
            message.group,
            message.process,
            flags,
            message.error,
        ]
    )
    if len(frame) > limit:
        raise MessageTooLargeError(
            f"message {message.type!r} is {len(frame)} bytes encoded; the limit"
            f" (max_message_size) is {limit}"
        )
    return frame


def read(frame: bytes) -> Message | list[Any]:
    """Decode a frame: a MSG frame into its `Message`, any other kind into its array.

    Every field of a message is checked here, once: the `Message` is built without
    going through its constructor again (this runs once per incoming message).

    Raises:
        WireError: not JSON; not an array starting with an int kind; or a MSG frame
            with a field missing or of the wrong kind (the error names it).
    """
    try:
        value = _from_json(frame)
    except ValueError as exc:
        raise WireError(f"not JSON: {exc}") from None
    if value.__class__ is not list or not value or value[0].__class__ is not int:
        raise WireError("a frame must be a JSON array starting with its kind")
    if value[0] != MSG:
        return value
    if len(value) != 10:
        if len(value) < 10:
            raise WireError(f"a message frame has 10 fields, got {len(value)}")
        value = value[:10]  # fields a newer peer added
    _, mtype, content, mid, source, destination, group, process, flags, error = value
    if mtype.__class__ is not str or not mtype:
        raise WireError("message type must be a non-empty string")
    if mid.__class__ is not int and mid.__class__ is not str:
        raise WireError("message id must be an int or a string")
    # One chain of identity tests on every incoming message; the loop only words an error.
    if not (
        (source is None or source.__class__ is str or source.__class__ is int)
        and (destination is None or destination.__class__ is str or destination.__class__ is int)
        and (group is None or group.__class__ is str or group.__class__ is int)
        and (process is None or process.__class__ is str or process.__class__ is int)
    ):
        for name, field in (
            ("source", source),
            ("destination", destination),
            ("group", group),
            ("process", process),
        ):
            if not _is_id(field):
                raise WireError(f"message {name} must be an int, a string or null")
    if flags.__class__ is not int or not 0 <= flags < 8:
        raise WireError("message flags must be an int from 0 to 7")
    if error is not None and error.__class__ is not str:
        raise WireError("message error must be a string or null")
    response_required, is_response, blocking = _FLAGS[flags]
    if group is not None and destination is not None and not is_response:
        # A group copy is addressed to one subscriber only inside its receiving process.
        raise WireError("a message sets destination or group, not both")
    # Every slot `Message.__init__` sets (tests/core/test_wire.py checks the two agree).
    message = _new(Message)
    message.type = mtype
    message.content = content
    message.id = mid
    message.source = source
    message.destination = destination
    message.group = group
    message.process = process
    message.response_required = response_required
    message.is_response = is_response
    message.blocking = blocking
    message.error = error
    message._hold = None
    return message


def _is_id(value: object) -> bool:
    cls = value.__class__
    return value is None or cls is str or cls is int


def encode(*fields: Any) -> bytes:
    """Encode a control frame, e.g. ``encode(FANOUT, message_id, 3)``."""
    return pydantic_core.to_json(list(fields))


def members_field(members: dict[ListenerId, tuple[int, tuple[str, ...]]]) -> list[Any]:
    """The membership list carried by SNAPSHOT and MEMBERS frames."""
    return [[process, inc, list(urls)] for process, (inc, urls) in members.items()]
