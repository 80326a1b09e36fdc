"""Event streams: an HTTP client as a listener, one Server-Sent Event per message.

A `StreamListener` is registered with the dispatcher like any other listener, so it
appears in every connected process's directory. It never answers by itself: a message
that expects a reply waits (``DEFERRED``) until the client POSTs the reply, and when
the stream closes, every message still unanswered is declined, so its sender gets the
core's usual ``undeliverable`` at once instead of waiting for its timeout.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

import anyio
import pydantic_core

from dispatchio import (
    DEFERRED,
    UNHANDLED,
    DispatchError,
    ListenerId,
    Message,
    MessageDispatcher,
    MessageListener,
    SyncSendError,
)
from dispatchio_http._json import id_key

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["StreamListener", "sse_event"]

logger = logging.getLogger("dispatchio.http.gateway")

#: Messages a stream holds at most, queued for a client that is not reading (beyond that,
#: new ones are declined) and, apart, waiting for the client's reply (beyond that, the
#: oldest is declined), so a stalled or forgetful client cannot grow memory.
BACKLOG: Final = 4096


def sse_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One Server-Sent Event. JSON never contains a raw newline, so ``data`` is one line."""
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\n"
    return head + b"event: " + event.encode() + b"\ndata: " + pydantic_core.to_json(data) + b"\n\n"


class StreamListener(MessageListener):
    """The listener standing for one open event stream.

    Args:
        listener_id: The ID it is registered under.
        dispatcher: The dispatcher it is registered with (replies go through it).
        on_held: Called with ``(key, self)`` when a message becomes answerable, and
            `on_released` when it no longer is (the gateway's reply index).
    """

    def __init__(
        self,
        listener_id: ListenerId,
        dispatcher: MessageDispatcher,
        on_held: Callable[[str, StreamListener], None],
        on_released: Callable[[str, StreamListener], None],
    ) -> None:
        self.id = listener_id
        self.lid: ListenerId = listener_id  # the same, never None
        self.dispatcher = dispatcher
        self.outgoing: collections.deque[Message] = collections.deque()
        self.wake = anyio.Event()
        self.open = True
        #: Messages handed to this stream so far.
        self.delivered = 0
        #: Messages the client may still answer, by ID key, oldest first.
        self.answerable: dict[str, Message] = {}
        self._on_held = on_held
        self._on_released = on_released

    def handle_message_sync(self, message: Message) -> Any:
        raise SyncSendError(
            f"listener {self.id!r} is an HTTP event stream; it answers only asynchronously"
        )

    async def handle_message(self, message: Message) -> Any:
        if not self.open:
            return UNHANDLED
        if len(self.outgoing) >= BACKLOG:
            logger.warning("event stream %r is not reading; declined %r", self.id, message)
            return UNHANDLED
        self.outgoing.append(message)
        self.delivered += 1
        self.wake.set()
        if message.is_response:
            return None
        if message.response_required or message.source is not None or message.blocking:
            key = id_key(message.id)
            previous = self.answerable.pop(key, None)
            if previous is not None:  # an ID reused while the first is unanswered
                await self._settle(previous)
            elif len(self.answerable) >= BACKLOG:
                # A page that ignores some messages must not end up declining all of
                # them: the oldest unanswered one goes (its sender has likely given up).
                oldest = next(iter(self.answerable))
                await self._settle(self.answerable.pop(oldest))
                self._on_released(oldest, self)
            self.answerable[key] = message
            self._on_held(key, self)
        if message.response_required or message.blocking:
            return DEFERRED
        return None

    def take(self, key: str) -> Message | None:
        """Remove and return the answerable message ``key`` (None: unknown or answered)."""
        message = self.answerable.pop(key, None)
        if message is not None:
            self._on_released(key, self)
        return message

    async def close(self) -> None:
        """The stream ended: decline what it never answered, release what it holds.

        Never suspends, so it completes even in a cancelled scope.
        """
        self.open = False
        self.outgoing.clear()
        self.wake.set()
        for key in list(self.answerable):
            await self._settle(self.answerable.pop(key))
            self._on_released(key, self)

    async def _settle(self, message: Message) -> None:
        # Declining sends the sender "undeliverable" now; a blocking letter nobody waits
        # for is only released (content None replies to nobody). If the dispatcher
        # stopped first, its own shutdown fails the senders.
        with contextlib.suppress(DispatchError):
            await self.dispatcher.reply(message, UNHANDLED if message.response_required else None)
