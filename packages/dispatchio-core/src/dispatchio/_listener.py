"""The listener interface: what the dispatcher delivers messages to."""

from __future__ import annotations

import abc
from typing import Any

from dispatchio._message import ListenerId, Message


class MessageListener(abc.ABC):
    """Receives messages from a dispatcher (or from another listener that chains to it).

    A listener needs a unique `id` to be registered with a dispatcher. A listener whose
    `id` is None can still handle messages that another listener passes on to it.
    Subclasses set `id` as a class attribute or in their own ``__init__``.

    Both handlers return the reply. Besides an ordinary value they may return:

    * ``None``: no reply, unless the sender expects one (`MessageDispatcher.request`,
      `MessageDispatcher.gather`, ``response_required=True``), which then gets a reply
      whose content is None.
    * `dispatchio.DEFERRED`: the handler keeps the message and replies later with
      `MessageDispatcher.reply`. Until then a blocking message keeps its destination held.
    * `dispatchio.UNHANDLED`: the listener declines the message. The dispatcher counts it,
      fires the ``dispatchio_message_unmatched`` hook, and a sender waiting for a reply
      gets ``undeliverable`` at once.

    An exception raised by a handler propagates to the caller of `send_sync`; on the
    asynchronous path it is logged and, when the sender expects a reply, returned to it
    as a ``handler_error``. It never stops the dispatcher.
    """

    #: The listener's unique ID (int or str), or None for an anonymous listener.
    id: ListenerId | None = None

    @abc.abstractmethod
    def handle_message_sync(self, message: Message) -> Any:
        """Handle a message sent with `MessageDispatcher.send_sync` and return the reply.

        Runs in the sender's thread, inside the sender's call. Must not block for long.

        Raises:
            SyncSendError: the listener can only answer asynchronously.
            Exception: anything the handler raises reaches the `send_sync` caller.
        """

    @abc.abstractmethod
    async def handle_message(self, message: Message) -> Any:
        """Handle an asynchronously sent message and return the reply.

        Runs in the dispatcher's task group. It may await; other messages keep flowing
        meanwhile (only a ``blocking`` message holds its destination). Cancelled when the
        dispatcher shuts down.

        Raises:
            Exception: logged by the dispatcher and, when the sender expects a reply,
                returned to it as ``handler_error``.
        """
