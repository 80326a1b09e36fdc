"""Blocking messages: while one is handled, later messages to its destination (or group) wait.

`Holds` owns two dicts, held messages per destination and per group, that the
scheduler tests on its hot path (``if by_dest and dest in by_dest``: an empty dict is
one truth test). A hold is released when its message (every copy of it, for a group)
is handled; the messages held behind it go back to the front of the queue, in order,
through the ``requeue`` callable the scheduler hands in.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from dispatchio._message import ListenerId, Message


class Hold:
    """A blocking message in progress: later messages to ``key`` wait until it is handled."""

    __slots__ = ("is_group", "key", "remaining")

    def __init__(self, key: ListenerId, is_group: bool, remaining: int) -> None:
        self.key = key
        self.is_group = is_group
        self.remaining = remaining


class Holds:
    """Every hold of one dispatcher, and the messages waiting behind them."""

    __slots__ = ("by_dest", "by_group", "requeue")

    def __init__(self, requeue: Callable[[Iterable[Message]], None]) -> None:
        self.by_dest: dict[ListenerId, collections.deque[Message]] = {}
        self.by_group: dict[ListenerId, collections.deque[Message]] = {}
        self.requeue = requeue

    def hold_destination(self, message: Message, dest: ListenerId) -> None:
        """``message`` is blocking: hold what comes after it for ``dest``."""
        message._hold = Hold(dest, False, 1)
        self.by_dest[dest] = collections.deque()

    def hold_group(self, group: ListenerId, copies: int) -> Hold:
        """A blocking group message was fanned out in ``copies``: hold the group."""
        self.by_group[group] = collections.deque()
        return Hold(group, True, copies)

    def release(self, message: Message) -> None:
        """A blocking message (or one copy of it) was handled: let the messages held go."""
        hold: Hold = message._hold  # type: ignore[assignment]
        message._hold = None
        hold.remaining -= 1
        if hold.remaining > 0:
            return
        held = (self.by_group if hold.is_group else self.by_dest).pop(hold.key, None)
        if held:
            self.requeue(reversed(held))

    def held_count(self) -> int:
        """How many messages wait behind holds."""
        return sum(len(held) for held in (*self.by_dest.values(), *self.by_group.values()))

    def clear(self) -> None:
        self.by_dest.clear()
        self.by_group.clear()
