"""The message: a slotted record with the specification's fields, validated when sent.

In-process sends never pay for pydantic: a message is a plain slotted object (about
300 ns to build) and `stamp` validates it with identity tests when it is sent.
Pydantic checks messages only where they cross a process boundary (`Message.from_json`).
"""

from __future__ import annotations

import enum
import functools
import itertools
import secrets
from typing import TYPE_CHECKING, Any, Final, Literal

from dispatchio._errors import InvalidMessageError

if TYPE_CHECKING:
    from pydantic import BaseModel

#: The type of listener, group, process and message IDs: an int or a str (never a bool).
ListenerId = int | str

_PUBLIC_FIELDS: Final = (
    "type",
    "content",
    "id",
    "source",
    "destination",
    "group",
    "process",
    "response_required",
    "is_response",
    "blocking",
    "error",
)


class Reply(enum.Enum):
    """Special values a handler may return instead of a reply."""

    #: "I will reply later": the handler keeps the message and calls `dispatcher.reply()`.
    DEFERRED = "DEFERRED"
    #: "Not for me": the listener declines the message (no rule matched).
    UNHANDLED = "UNHANDLED"

    def __repr__(self) -> str:
        return f"dispatchio.{self.value}"


DEFERRED: Final = Reply.DEFERRED
UNHANDLED: Final = Reply.UNHANDLED
DeferredType = Literal[Reply.DEFERRED]


class Message:
    """A message: what travels from a sender to one listener or to a group of them.

    Args:
        type: Human-readable name of the kind of message, e.g. ``"deal"``. Required.
        content: The payload. Anything in-process; JSON-compatible data across processes.
        id: Unique message ID. Leave it None and the dispatcher assigns one at send time
            (an int unique across processes: a counter from a random 62-bit start chosen
            per dispatcher; odd if the sender awaits replies, see `MessageIds`). A
            response carries the ID of the message it answers.
        source: ID of the sending listener; replies and returned letters go there.
        destination: ID of the listener the message is for. Set this or ``group``.
        group: ID of a group; every subscriber gets a copy.
        process: ID of the process the message was sent from (its return address).
            The dispatcher stamps it at send time when left None.
        response_required: The sender expects a reply; with `MessageDispatcher.send`
            a missing reply comes back as a ``timeout`` error after the reply timeout.
        is_response: This message answers the message with the same ``id``.
        blocking: Hold every later message to the same destination (or group) until this
            one has been handled.
        error: None, or ``"<code>: <detail>"`` for a failure that came back to the
            sender; the codes are ``undeliverable``, ``timeout``, ``handler_error``,
            ``peer_lost`` and ``outbox_full`` (see `dispatchio.DeliveryError`).

    Raises:
        InvalidMessageError: not here, but when a message with a bad field is sent
            (`stamp`), naming the field.
    """

    __slots__ = (*_PUBLIC_FIELDS, "_hold")

    type: str
    content: Any
    id: ListenerId | None
    source: ListenerId | None
    destination: ListenerId | None
    group: ListenerId | None
    process: ListenerId | None
    response_required: bool
    is_response: bool
    blocking: bool
    error: str | None
    # The hold a blocking message keeps on its destination or group (`dispatchio._blocking`),
    # else None. Always set: a getattr default on an unset slot raises and swallows an
    # AttributeError, which costs more than this store on every message.
    _hold: object

    def __init__(
        self,
        type: str,
        content: Any = None,
        *,
        id: ListenerId | None = None,
        source: ListenerId | None = None,
        destination: ListenerId | None = None,
        group: ListenerId | None = None,
        process: ListenerId | None = None,
        response_required: bool = False,
        is_response: bool = False,
        blocking: bool = False,
        error: str | None = None,
    ) -> None:
        self.type = type
        self.content = content
        self.id = id
        self.source = source
        self.destination = destination
        self.group = group
        self.process = process
        self.response_required = response_required
        self.is_response = is_response
        self.blocking = blocking
        self.error = error
        self._hold = None

    def evolve(self, **changes: Any) -> Message:
        """Return a copy of this message with some fields changed (a shallow copy)."""
        fields = self.to_dict()
        fields.update(changes)
        return Message(**fields)

    def to_dict(self) -> dict[str, Any]:
        """Return the public fields as a dict (``content`` is not copied)."""
        return {name: getattr(self, name) for name in _PUBLIC_FIELDS}

    def to_json(self) -> bytes:
        """Serialise to JSON bytes.

        Raises:
            InvalidMessageError: a field is invalid, or ``content`` holds something JSON
                cannot carry; the error names the field.
        """
        import pydantic_core

        check_message(self)
        try:
            return pydantic_core.to_json(self.to_dict())
        except pydantic_core.PydanticSerializationError as exc:
            raise InvalidMessageError(f"content cannot be sent as JSON: {exc}") from exc

    @classmethod
    def from_json(cls, data: bytes | str) -> Message:
        """Parse and validate a message serialised by `to_json`.

        Raises:
            InvalidMessageError: the data is not JSON, or not a valid message; the error
                names the offending field.
        """
        import pydantic

        try:
            model = _wire_model().model_validate_json(data)
        except pydantic.ValidationError as exc:
            raise InvalidMessageError(f"invalid message: {_describe(exc)}") from exc
        return cls(**dict(model))

    def __repr__(self) -> str:
        parts = [repr(self.type)]
        for name in _PUBLIC_FIELDS[1:]:
            value = getattr(self, name)
            if value is not None and value is not False:
                parts.append(f"{name}={value!r}")
        return f"Message({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _PUBLIC_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable


def _describe(exc: Any) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors()
    )


@functools.cache
def _wire_model() -> type[BaseModel]:
    # Built on first use, so importing dispatchio never pays for pydantic model creation.
    from pydantic import BaseModel, ConfigDict, JsonValue, StrictInt, StrictStr

    wire_id = StrictInt | StrictStr

    class WireMessage(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        type: StrictStr
        content: JsonValue = None
        id: wire_id | None = None
        source: wire_id | None = None
        destination: wire_id | None = None
        group: wire_id | None = None
        process: wire_id | None = None
        response_required: bool = False
        is_response: bool = False
        blocking: bool = False
        error: StrictStr | None = None

    return WireMessage


def _is_id(value: object) -> bool:
    return value is None or (isinstance(value, (int, str)) and not isinstance(value, bool))


class MessageIds:
    """The message IDs one dispatcher assigns: unique across processes, and telling
    which messages awaited replies.

    Two interleaved counters from one random even 62-bit start: even IDs for messages
    nobody waits for, odd ones for messages whose sender awaits replies (``request``,
    ``gather``, ``send(response_required=True)``). So a response carrying one of this
    dispatcher's odd IDs with no wait left for it is late however long ago the wait
    ended, with no memory of each ID (`is_awaited`); IDs chosen by the sender are
    remembered instead (`dispatchio._replies.Expired`).

    Two dispatchers' IDs meet only if their starts fall within as many IDs as they send
    of each other (about n / 2**61 for n IDs), and every ID stays a 64-bit integer,
    which JSON encodes and decodes on its fast path (a wider one costs about 0.7 us
    more each way on every cross-process message).
    """

    __slots__ = ("awaited", "last_awaited", "plain", "start")

    def __init__(self) -> None:
        start = secrets.randbits(62) & ~1
        self.start = start
        self.plain = itertools.count(start, 2)
        self.awaited = itertools.count(start + 1, 2)
        #: The newest odd ID handed out (every odd ID from ``start + 1`` to it is ours).
        self.last_awaited = start - 1

    def is_awaited(self, message_id: object) -> bool:
        """Whether ``message_id`` is an ID this dispatcher gave a message that awaited
        replies."""
        return (
            message_id.__class__ is int
            and message_id & 1 == 1
            and self.start < message_id <= self.last_awaited
        )


def stamp(message: Message, ids: MessageIds, process_id: ListenerId) -> None:
    """Validate a message being sent, then assign its ``id`` and ``process`` if unset.

    The dispatcher calls this on every send, so the common case is one chain of
    identity tests (about 90 ns) in one call; anything unusual, such as a `str`
    subclass for ``type``, falls through to the thorough `check_message`. An ``id``
    comes from ``ids``: an odd one if ``response_required`` is set (`MessageIds`).

    Raises:
        InvalidMessageError: naming the first bad field.
    """
    # Fields read once are not copied to locals (the common value, None or False, is
    # one test); those read again are.
    t = message.type
    rr = message.response_required
    d = message.destination
    i = message.id
    p = message.process
    if not (
        t.__class__ is str
        and t
        and (rr is False or rr is True)
        and (message.is_response is False or message.is_response is True)
        and (message.blocking is False or message.blocking is True)
        and (d is None or d.__class__ is str or d.__class__ is int)
        and (
            message.source is None
            or message.source.__class__ is str
            or message.source.__class__ is int
        )
        and (
            message.group is None
            or (d is None and (message.group.__class__ is str or message.group.__class__ is int))
        )
        and (i is None or i.__class__ is int or i.__class__ is str)
        and (p is None or p.__class__ is str or p.__class__ is int)
        and (message.error is None or message.error.__class__ is str)
    ):
        check_message(message)
    if i is None:
        if rr:
            message.id = ids.last_awaited = next(ids.awaited)
        else:
            message.id = next(ids.plain)
    if p is None:
        message.process = process_id


def check_message(message: Message) -> None:
    """Validate every field of a message.

    Raises:
        InvalidMessageError: naming the first bad field.
    """
    t = message.type
    if not isinstance(t, str) or not t:
        raise InvalidMessageError(f"Message.type must be a non-empty str, got {t!r}")
    for name in ("response_required", "is_response", "blocking"):
        value = getattr(message, name)
        if value is not True and value is not False:
            raise InvalidMessageError(f"Message.{name} must be a bool, got {value!r}")
    for name in ("id", "source", "destination", "group", "process"):
        value = getattr(message, name)
        if not _is_id(value):
            raise InvalidMessageError(
                f"Message.{name} must be an int, a str or None, got {value!r}"
            )
    error = message.error
    if error is not None and not isinstance(error, str):
        raise InvalidMessageError(f"Message.error must be a str or None, got {error!r}")
    if message.group is not None and message.destination is not None:
        raise InvalidMessageError(
            f"set Message.destination or Message.group, not both (got {message.destination!r}"
            f" and {message.group!r})"
        )


def response_to(
    message: Message,
    content: Any,
    source: ListenerId | None,
    process: ListenerId | None,
    error: str | None,
) -> Message:
    """The response (or returned letter) answering ``message``: its type and ID, from
    ``source`` (None for a letter the dispatcher returns) in ``process``, back to its
    source listener.

    The one place a response is built, hot paths included. Positional arguments and no
    ``__init__``: this costs about half of ``Message(..., is_response=True, ...)``.
    """
    response: Message = _new_object(Message)
    response.type = message.type
    response.content = content
    response.id = message.id
    response.source = source
    response.destination = message.source
    response.group = None
    response.process = process
    response.response_required = False
    response.is_response = True
    response.blocking = False
    response.error = error
    response._hold = None
    return response


_new_object: Final = object.__new__
