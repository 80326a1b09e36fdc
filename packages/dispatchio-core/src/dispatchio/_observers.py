"""What a dispatcher counts and who watches: `DispatcherStats` and the observation hooks.

`Observers` is the one place an event a sender might never see (a decline, a handler
error, a returned letter, a timeout) is counted, logged and handed to the plugins'
observation hooks. The parts of the dispatcher call it; it calls nothing of theirs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import pluggy

    from dispatchio._listener import MessageListener
    from dispatchio._message import Message

logger = logging.getLogger("dispatchio")

OBSERVATION_HOOKS: Final = (
    "dispatchio_message_sent",
    "dispatchio_message_delivered",
    "dispatchio_message_returned",
    "dispatchio_reply_timed_out",
    "dispatchio_handler_failed",
    "dispatchio_message_unmatched",
)


class DispatcherStats:
    """Counters of the events a sender might otherwise never see. Read-only for users."""

    __slots__ = (
        "cancelled_handlers",
        "discarded",
        "dropped_replies",
        "handler_errors",
        "late_replies",
        "returned",
        "timeouts",
        "unmatched",
    )

    def __init__(self) -> None:
        #: Messages a listener declined (no rule matched).
        self.unmatched = 0
        #: Letters returned to their sender (undeliverable, timeout, handler error,
        #: peer_lost, outbox_full).
        self.returned = 0
        #: Waits that ended in a timeout.
        self.timeouts = 0
        #: Handler exceptions on the asynchronous path.
        self.handler_errors = 0
        #: Replies that arrived after their sender stopped waiting (dropped).
        self.late_replies = 0
        #: Replies and returned letters with nowhere to go (no such sender listener).
        self.dropped_replies = 0
        #: Messages still queued or held behind a blocking message when the dispatcher closed.
        self.discarded = 0
        #: Handlers still running when the dispatcher closed (after its ``shutdown_grace``,
        #: or at once when the ``async with`` body raised), cancelled.
        self.cancelled_handlers = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"DispatcherStats({self.as_dict()})"


class Observers:
    """Counts, logs and reports the events of one dispatcher.

    ``observed`` is False while no plugin implements an observation hook, so the hot
    paths test one attribute and skip the call. ``dispatcher`` is only passed on to the
    hooks (their ``dispatcher=`` argument).
    """

    __slots__ = ("_hook", "_implemented", "dispatcher", "observed", "stats")

    def __init__(self, plugins: pluggy.PluginManager, dispatcher: object) -> None:
        self._hook = plugins.hook
        self.dispatcher = dispatcher
        self.stats = DispatcherStats()
        self._implemented: frozenset[str] = frozenset()
        self.observed = False
        self.refresh()

    def refresh(self) -> None:
        """Re-check which observation hooks have implementations."""
        self._implemented = frozenset(
            name for name in OBSERVATION_HOOKS if getattr(self._hook, name).get_hookimpls()
        )
        self.observed = bool(self._implemented)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call one observation hook; an implementation that raises is logged and ignored."""
        if hook_name not in self._implemented:
            return
        try:
            getattr(self._hook, hook_name)(dispatcher=self.dispatcher, **kwargs)
        except Exception:
            logger.exception("a %s hook implementation raised", hook_name)

    def sent(self, message: Message) -> None:
        self.notify("dispatchio_message_sent", message=message)

    def delivered(self, message: Message, listener: MessageListener) -> None:
        self.notify("dispatchio_message_delivered", message=message, listener=listener)

    def unmatched(self, message: Message, listener: MessageListener | None) -> None:
        self.stats.unmatched += 1
        if self.observed:
            self.notify("dispatchio_message_unmatched", message=message, listener=listener)

    def handler_failed(
        self, message: Message, listener: MessageListener | None, exc: Exception
    ) -> None:
        self.stats.handler_errors += 1
        logger.error(
            "handler of listener %r raised on %r", message.destination, message, exc_info=exc
        )
        if self.observed:
            self.notify("dispatchio_handler_failed", message=message, listener=listener, error=exc)

    def returned(self, letter: Message) -> None:
        self.stats.returned += 1
        if self.observed:
            self.notify("dispatchio_message_returned", message=letter)

    def timed_out(self, message: Message) -> None:
        self.stats.timeouts += 1
        if self.observed:
            self.notify("dispatchio_reply_timed_out", message=message)
