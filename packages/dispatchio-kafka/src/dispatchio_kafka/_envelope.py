"""What dispatchio writes to Kafka: topic names and record values (plain JSON, documented).

Every topic of a namespace ``ns`` starts with ``dispatchio.<ns>.``:

* ``dispatchio.<ns>.p.<process>``: the inbox of one process (one partition, 0). A record
  is one frame from one sender; its key is the sender's process ID (UTF-8 text, for
  tools only) and its value the UTF-8 JSON object
  ``{"v": 1, "process": <sender>, "incarnation": <int>, "to": <int>, "frame": <frame>}``,
  where ``frame`` is the JSON array the core exchanges (a message is
  ``[0, type, content, id, source, destination, group, process, flags, error]``) and the
  optional ``to`` is the receiver's incarnation as the sender knew it: a record meant
  for an earlier incarnation of its reader delivers only a letter (stored for its
  return), never a response or a control frame, which were for the earlier one.
* ``dispatchio.<ns>.members``: membership (one partition, 0), key as above, value
  ``{"v": 1, "process": .., "incarnation": .., "state": "up" | "left", "urls": [..],
  "durable_for": <seconds>}``.

A process ID becomes a topic name part with every byte outside ``[A-Za-z0-9-]`` written
``_xx`` (two lower-case hex digits of its UTF-8 bytes); an int ID is ``_i<digits>``; a part
that would make the name longer than Kafka allows is ``_h`` and 40 hex digits of its
SHA-256.
"""

from __future__ import annotations

import hashlib
import string
from typing import Any, Final, NamedTuple

import pydantic_core

from dispatchio import ListenerId

VERSION: Final = 1
#: Kafka refuses topic names longer than this.
MAX_TOPIC: Final = 249
#: Longest process ID carried in a record (as the core limits IDs on the wire).
MAX_ID: Final = 256
#: Bytes of envelope around a frame, at most (process ID and incarnation included).
OVERHEAD: Final = 2 * MAX_ID + 128
_PLAIN: Final = frozenset((string.ascii_letters + string.digits + "-").encode())
_NAMESPACE: Final = frozenset(string.ascii_letters + string.digits + "-_")
MAX_NAMESPACE: Final = 100


class EnvelopeError(ValueError):
    """A record that is not a dispatchio envelope (the message says what is wrong)."""


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is usable in topic names.

    Raises:
        ValueError: empty, too long, or a character outside ``[A-Za-z0-9_-]``.
    """
    if not namespace:
        raise ValueError("the namespace (the URL's path) is empty")
    if len(namespace) > MAX_NAMESPACE:
        raise ValueError(f"the namespace is longer than {MAX_NAMESPACE} characters")
    bad = sorted(set(namespace) - _NAMESPACE)
    if bad:
        raise ValueError(f"the namespace may hold only A-Z, a-z, 0-9, '_' and '-', not {bad!r}")
    return namespace


def topic_part(process: ListenerId) -> str:
    """The part of a topic name that stands for ``process`` (injective, see module doc)."""
    if process.__class__ is int:
        return f"_i{process}"
    raw = str(process).encode()
    return "".join(chr(b) if b in _PLAIN else f"_{b:02x}" for b in raw)


def inbox_topic(namespace: str, process: ListenerId) -> str:
    """The inbox topic of ``process`` in ``namespace``."""
    name = f"dispatchio.{namespace}.p.{topic_part(process)}"
    if len(name) > MAX_TOPIC:
        digest = hashlib.sha256(repr(process).encode()).hexdigest()[:40]
        name = f"dispatchio.{namespace}.p._h{digest}"
    return name


def members_topic(namespace: str) -> str:
    """The membership topic of ``namespace``."""
    return f"dispatchio.{namespace}.members"


def record_key(process: ListenerId) -> bytes:
    """The key of every record ``process`` writes."""
    return str(process).encode()


def record_prefix(process: ListenerId, incarnation: int, to: int | None = None) -> bytes:
    """The bytes before the frame in every record ``process`` writes (frame, then ``}``);
    ``to``: the incarnation of the receiving process the sender knows, if any."""
    fields: dict[str, Any] = {"v": VERSION, "process": process, "incarnation": incarnation}
    if to is not None:
        fields["to"] = to
    return pydantic_core.to_json(fields)[:-1] + b',"frame":'


class Inbound(NamedTuple):
    """A decoded inbox record."""

    process: ListenerId
    incarnation: int
    frame: bytes
    to: int | None = None
    """The receiver's incarnation the sender knew (None: it did not say)."""


def is_letter(frame: bytes) -> bool:
    """Whether ``frame`` is a message that is not a response: the only kind a record
    meant for an earlier incarnation of its receiver still carries for the current one
    (a letter stored for its return). Parses the frame: for such records only."""
    if not frame.startswith(b"[0,"):
        return False
    try:
        fields = pydantic_core.from_json(frame)
    except ValueError:
        return False
    flags = fields[8] if fields.__class__ is list and len(fields) > 8 else None
    return flags.__class__ is int and not flags & 2


def _check_id(value: Any, what: str) -> ListenerId:
    cls = value.__class__
    if cls is int:
        return int(value)
    if cls is str:
        if not value or len(value) > MAX_ID:
            raise EnvelopeError(f"{what} must be 1 to {MAX_ID} characters")
        return str(value)
    raise EnvelopeError(f"{what} must be a string or an int, not {cls.__name__}")


def _check_incarnation(value: Any, what: str = "incarnation") -> int:
    if value.__class__ is not int or not 0 <= value < 1 << 64:
        raise EnvelopeError(f"{what} must be an int from 0 to 2**64 - 1")
    return int(value)


def _object(value: bytes | None, limit: int) -> dict[str, Any]:
    if value is None:
        raise EnvelopeError("the record has no value")
    if len(value) > limit:
        raise EnvelopeError(f"the record is {len(value)} bytes; the limit is {limit}")
    try:
        decoded = pydantic_core.from_json(value)
    except ValueError as exc:
        raise EnvelopeError(f"the value is not JSON: {exc}") from None
    if decoded.__class__ is not dict:
        raise EnvelopeError("the value must be a JSON object")
    if decoded.get("v") != VERSION or decoded["v"].__class__ is not int:
        raise EnvelopeError(f"unknown envelope version {decoded.get('v')!r} (expected 1)")
    result: dict[str, Any] = decoded
    return result


_CANONICAL: Final = b'{"v":1,"process":'
_FRAME_KEY: Final = b',"frame":'


def decode_inbound(value: bytes | None, max_frame_size: int) -> Inbound:
    """Decode an inbox record's value.

    Records written by dispatchio (`record_prefix`, the frame, ``}``) take a fast path:
    only the short head is parsed, and the frame is passed on as it is (the core
    validates it). Anything else is parsed whole.

    Raises:
        EnvelopeError: not an envelope: no value, too large, not JSON, a missing or
            wrongly typed field (the message names it).
    """
    if value is not None and value.startswith(_CANONICAL) and value.endswith(b"]}"):
        # ',"frame":' cannot occur inside the JSON strings before it (their quotes are
        # escaped), so its first occurrence ends the head.
        cut = value.find(_FRAME_KEY)
        if cut > 0 and len(value) - cut - 10 <= max_frame_size:
            try:
                head = pydantic_core.from_json(value[:cut] + b"}")
            except ValueError:
                head = None
            if (
                head.__class__ is dict
                and "incarnation" in head
                and (len(head) == 3 or (len(head) == 4 and "to" in head))
            ):
                raw = value[cut + 9 : -1]
                if raw[:1] == b"[" and raw[1:2].isdigit():  # an array with an int kind
                    to = head.get("to")
                    return Inbound(
                        _check_id(head["process"], "process"),
                        _check_incarnation(head["incarnation"]),
                        raw,
                        None if to is None else _check_incarnation(to, "to"),
                    )
    decoded = _object(value, max_frame_size + OVERHEAD)
    process = _check_id(decoded.get("process"), "process")
    incarnation = _check_incarnation(decoded.get("incarnation"))
    to = decoded.get("to")
    if to is not None:
        to = _check_incarnation(to, "to")
    frame = decoded.get("frame")
    if frame.__class__ is not list or not frame or frame[0].__class__ is not int:
        raise EnvelopeError("frame must be a JSON array starting with an int")
    encoded = pydantic_core.to_json(frame)
    if len(encoded) > max_frame_size:
        raise EnvelopeError(f"the frame is {len(encoded)} bytes; the limit is {max_frame_size}")
    return Inbound(process, incarnation, encoded, to)


class Member(NamedTuple):
    """A decoded membership record."""

    process: ListenerId
    incarnation: int
    up: bool
    urls: tuple[str, ...]
    durable_for: float


def encode_member(
    process: ListenerId, incarnation: int, *, up: bool, urls: tuple[str, ...], durable_for: float
) -> bytes:
    """The value of a membership record."""
    return pydantic_core.to_json(
        {
            "v": VERSION,
            "process": process,
            "incarnation": incarnation,
            "state": "up" if up else "left",
            "urls": list(urls),
            "durable_for": durable_for,
        }
    )


def decode_member(value: bytes | None) -> Member:
    """Decode a membership record's value.

    Raises:
        EnvelopeError: not a membership record (the message says why).
    """
    decoded = _object(value, 64 * 1024)
    process = _check_id(decoded.get("process"), "process")
    incarnation = _check_incarnation(decoded.get("incarnation"))
    state = decoded.get("state")
    if state not in ("up", "left"):
        raise EnvelopeError("state must be 'up' or 'left'")
    urls = decoded.get("urls", [])
    if urls.__class__ is not list or not all(u.__class__ is str for u in urls):
        raise EnvelopeError("urls must be a list of strings")
    durable_for = decoded.get("durable_for", 0)
    if durable_for.__class__ not in (int, float) or not 0 <= durable_for < float("inf"):
        raise EnvelopeError("durable_for must be a number of seconds, 0 or more")
    return Member(process, incarnation, state == "up", tuple(urls), float(durable_for))
