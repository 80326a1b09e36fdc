"""Messages as the gateway's JSON: parsing requests, rendering messages for browsers.

IDs and browsers: a JavaScript number is exact only up to 2**53 - 1, and the message IDs
the core assigns are wider (64 random bits, then a 32-bit counter). So the gateway always
writes a message's ``id`` as a string (an int ID in decimal), in JSON bodies and in the
SSE ``id:`` field, and writes any other ID field (``source``, ``destination``, ``group``,
``process``) as a decimal string when it is an int beyond that range. Clients send IDs
back as strings or ints; the reply path looks a message up by its ID's decimal string,
so both work.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final

import anyio
import pydantic_core
from aiohttp import web

from dispatchio import Message
from dispatchio_http._frames import ReceiveBudget
from dispatchio_http._problems import HttpProblem

__all__ = [
    "MESSAGE_FIELDS",
    "BodyHold",
    "id_key",
    "message_json",
    "parse_message",
    "parse_wait",
    "read_json",
]

#: JavaScript's Number.MAX_SAFE_INTEGER.
JS_SAFE: Final = (1 << 53) - 1
#: Client-chosen int IDs must fit in 128 bits (the core assigns 96-bit ones).
_INT_LIMIT: Final = 1 << 127
#: The fields a gateway client may set on a message it sends.
MESSAGE_FIELDS: Final = (
    "type",
    "content",
    "id",
    "source",
    "destination",
    "group",
    "response_required",
    "blocking",
)
_ID_FIELDS: Final = ("id", "source", "destination", "group")
_BOOL_FIELDS: Final = ("response_required", "blocking")
_ALLOWED: Final = frozenset(MESSAGE_FIELDS)


def id_key(value: object) -> str:
    """The string a message ID is known by on the gateway (an int in decimal)."""
    return value if isinstance(value, str) else str(value)


def _safe_id(value: Any) -> Any:
    if value.__class__ is int and not -JS_SAFE <= value <= JS_SAFE:
        return str(value)
    return value


def message_json(message: Message) -> dict[str, Any]:
    """A message as gateway JSON (see the module docstring for the IDs)."""
    return {
        "type": message.type,
        "content": message.content,
        "id": None if message.id is None else id_key(message.id),
        "source": _safe_id(message.source),
        "destination": _safe_id(message.destination),
        "group": _safe_id(message.group),
        "process": _safe_id(message.process),
        "response_required": message.response_required,
        "is_response": message.is_response,
        "blocking": message.blocking,
        "error": message.error,
    }


class BodyHold:
    """What one gateway request holds of the bodies' budget (``max_pending_body_bytes``:
    without it, ``max_concurrent_requests`` clients could each hold a body of
    ``max_body_size`` bytes, a gigabyte with the defaults), from before its body is read
    until its response is made; `release` gives it back."""

    __slots__ = ("_budget", "size")

    def __init__(self, budget: ReceiveBudget) -> None:
        self._budget = budget
        self.size = 0

    def take(self, size: int) -> None:
        """Count ``size`` more bytes of this request's body.

        Raises:
            HttpProblem: 503 busy (with ``Retry-After``; the connection is closed, as the
                body is not read to its end) when the budget would be passed.
        """
        budget = self._budget
        if budget.held + size > budget.limit:
            raise HttpProblem(
                503,
                "busy",
                f"the request bodies held at once would pass {budget.limit} bytes"
                " (max_pending_body_bytes); try again shortly",
                headers={"Retry-After": "1"},
                close=True,
            )
        budget.held += size
        self.size += size

    def release(self) -> None:
        """Give back what this request holds (idempotent)."""
        self._budget.held -= self.size
        self.size = 0


async def read_json(request: web.Request, limit: int, timeout: float, hold: BodyHold) -> Any:
    """Read and parse a JSON request body of at most ``limit`` bytes within ``timeout`` s.

    The size is checked before reading when ``Content-Length`` is given; a chunked body
    is read only up to the cap. The header timeout of the server ends once the request
    head is in; ``timeout`` bounds the body, so a client trickling it holds no handler
    (nor a slot of ``max_concurrent_requests``) for longer. The body's bytes are counted
    in ``hold`` as they are accepted (all at once for a ``Content-Length``); the caller
    releases them when the request is over.

    Raises:
        HttpProblem: 415 not ``application/json``; 413 larger than ``limit``; 503 busy
            when the body would pass the budget ``hold`` draws on (the connection is
            closed); 408 the body did not arrive within ``timeout`` (the connection is
            closed); 400 not JSON (including nesting deeper than the parser allows, and
            NaN/Infinity).
    """
    # The exact header is the common case; aiohttp's parser handles parameters.
    if (
        request.headers.get("Content-Type") != "application/json"
        and request.content_type != "application/json"
    ):
        raise HttpProblem(
            415,
            "unsupported_media_type",
            f"send Content-Type: application/json, not {request.content_type!r}",
        )
    length = request.content_length
    if length is not None and length > limit:
        raise HttpProblem(413, "too_large", f"the body of {length} bytes exceeds {limit}")
    body = None
    with anyio.move_on_after(timeout):
        if length is not None:
            hold.take(length)
            try:
                body = await request.content.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                raise HttpProblem(400, "not_json", "the body ended before Content-Length") from exc
        else:
            body = await _read_capped(request, limit, hold)
    if body is None:
        raise HttpProblem(
            408,
            "body_timeout",
            f"the request body did not arrive within {timeout:g} s (body_timeout)",
            close=True,
        )
    if not body:
        raise HttpProblem(400, "not_json", "the body is empty; send a JSON document")
    try:
        return pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise HttpProblem(400, "not_json", f"the body is not valid JSON: {exc}") from exc


async def _read_capped(request: web.Request, limit: int, hold: BodyHold) -> bytes:
    """A body of unknown length (chunked), read only up to ``limit``, counted in ``hold``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            # close: the rest of the body is never read (nor drained).
            raise HttpProblem(413, "too_large", f"the body exceeds {limit} bytes", close=True)
        hold.take(len(chunk))
        chunks.append(chunk)


def _invalid(field: str, detail: str) -> HttpProblem:
    return HttpProblem(422, "invalid_message", f"{field}: {detail}", field=field)


def _check_id(field: str, value: Any) -> None:
    if value is None:
        return
    if value.__class__ is str:
        return
    if value.__class__ is int:
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise _invalid(field, "an int ID must fit in 128 bits (send a string instead)")
        return
    raise _invalid(field, f"must be a string or an integer, got {type(value).__name__}")


def parse_message(data: Any) -> Message:
    """Build the message a gateway client sent.

    Raises:
        HttpProblem: 422 naming the first bad field (``field`` in the problem too).
    """
    if not isinstance(data, dict):
        raise _invalid("message", f"the body must be a JSON object, got {type(data).__name__}")
    if not _ALLOWED.issuperset(data):
        field = sorted(data.keys() - _ALLOWED)[0]
        raise _invalid(
            field, f"not a field a client may set (allowed: {', '.join(MESSAGE_FIELDS)})"
        )
    kind = data.get("type")
    if kind.__class__ is not str or not kind:
        raise _invalid("type", "required, a non-empty string")
    for field in _ID_FIELDS:
        value = data.get(field)
        if value is not None and value.__class__ is not str:
            _check_id(field, value)
    for field in _BOOL_FIELDS:
        value = data.get(field, False)
        if value is not True and value is not False:
            raise _invalid(field, f"must be true or false, got {value!r}")
    destination = data.get("destination")
    group = data.get("group")
    if destination is None and group is None:
        raise _invalid("destination", "set destination (a listener ID) or group")
    if destination is not None and group is not None:
        raise _invalid("group", "set destination or group, not both")
    return Message(
        kind,
        data.get("content"),
        id=data.get("id"),
        source=data.get("source"),
        destination=destination,
        group=group,
        response_required=data.get("response_required", False),
        blocking=data.get("blocking", False),
    )


def parse_wait(raw: str) -> float:
    """The ``wait`` query parameter in seconds.

    Raises:
        HttpProblem: 400 unless it is a positive, finite number.
    """
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not (wait > 0 and math.isfinite(wait)):
        raise HttpProblem(
            400, "invalid_wait", f"wait must be a positive number of seconds, got {raw!r}"
        )
    return wait
