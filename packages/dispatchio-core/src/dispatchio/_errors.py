"""The exceptions dispatchio raises.

Every failure the dispatcher reports is a `DispatchError`::

    DispatchError
    ├── InvalidMessageError        a field has a value of the wrong kind
    │   └── MessageTooLargeError   the encoded message exceeds the size limit
    ├── TransportError             a transport failed to start, bind or send
    │   └── TransportConfigError   a malformed transport URL or an unknown option
    ├── DuplicateListenerError     an ID is already registered
    ├── DispatcherNotRunningError  the async API was used outside `async with dispatcher:`
    ├── SyncSendError              `send_sync` cannot reach that handler synchronously
    └── DeliveryError              a message was sent but no usable reply came back
        ├── UndeliverableError     nobody can receive it             (code "undeliverable")
        ├── ReplyTimeoutError      no reply within the timeout       (code "timeout")
        ├── HandlerError           the receiving handler raised      (code "handler_error")
        ├── PeerLostError          the receiving process died        (code "peer_lost")
        └── OutboxFullError        the link to that process is full  (code "outbox_full")

A `DeliveryError` can travel inside a message: a message returned to its sender
carries ``error = "<code>: <detail>"``. `error_from_message` turns such a message
back into the matching exception, and `DeliveryError.code` gives the code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from dispatchio._message import Message


class DispatchError(Exception):
    """Base class of every exception raised by dispatchio."""


class InvalidMessageError(DispatchError, ValueError):
    """A message field holds a value of the wrong kind (for example a non-bool ``blocking``).

    Raised no later than when the message is sent; the message names the field.
    """


class MessageTooLargeError(InvalidMessageError):
    """The encoded message is larger than the dispatcher's ``max_message_size``."""


class TransportError(DispatchError):
    """A transport could not start (address in use, bad TLS setup) or was used after close."""


class TransportConfigError(TransportError, ValueError):
    """A transport URL is malformed, names no installed transport, or has an unknown option.

    The message names the URL and the offending part.
    """


class DuplicateListenerError(DispatchError):
    """A listener was registered under an ID that another registered listener already has."""


class DispatcherNotRunningError(DispatchError):
    """An asynchronous method was called while the dispatcher was not running.

    The asynchronous API (`send`, `request`, `gather`, `reply`) works only inside
    ``async with dispatcher:``; `send_sync` works anywhere.
    """


class SyncSendError(DispatchError):
    """`send_sync` reached a handler that cannot answer synchronously.

    Raised for an ``async def`` callback rule, and for a listener in another process.
    """


class DeliveryError(DispatchError):
    """A sent message produced no usable reply. `code` is the wire code of the failure."""

    code: ClassVar[str] = "delivery_error"

    def __init__(self, detail: str, *, message: Message | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        #: The message that failed (for a returned letter, the message that came back).
        self.message = message


class UndeliverableError(DeliveryError):
    """No listener could receive the message: unknown destination, empty group, or no rule matched.

    Reported at once, without waiting for any timeout.
    """

    code = "undeliverable"


class ReplyTimeoutError(DeliveryError, TimeoutError):
    """No reply arrived within the reply timeout."""

    code = "timeout"


class HandlerError(DeliveryError):
    """The receiving handler raised. In the same process the original exception is ``__cause__``."""

    code = "handler_error"


class PeerLostError(DeliveryError):
    """The process holding the receiver died or became unreachable before it answered.

    Reported once the failure detector notices (heartbeat interval x tolerance).
    """

    code = "peer_lost"


class OutboxFullError(DeliveryError):
    """The outgoing buffer of the link to the receiving process is full (it is not keeping up)."""

    code = "outbox_full"


_BY_CODE: dict[str, type[DeliveryError]] = {
    cls.code: cls
    for cls in (UndeliverableError, ReplyTimeoutError, HandlerError, PeerLostError, OutboxFullError)
}


def format_error(code: str, detail: str) -> str:
    """Build the text of a message's ``error`` field: ``"<code>: <detail>"``."""
    return f"{code}: {detail}"


def error_from_message(message: Message) -> DeliveryError | None:
    """Return the exception matching ``message.error``, or None when the message is no error.

    An unknown code gives a plain `DeliveryError`, so a newer peer's codes never crash an
    older one.
    """
    error = message.error
    if error is None:
        return None
    code, _, detail = error.partition(": ")
    cls = _BY_CODE.get(code, DeliveryError)
    return cls(detail or error, message=message)
