"""Bookkeeping for messages whose sender waits for replies, and the timer heap that expires them."""

from __future__ import annotations

import collections
import heapq
import itertools
from typing import TYPE_CHECKING, Any, Final

from dispatchio._errors import UndeliverableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatchio._backend import Future
    from dispatchio._message import ListenerId, Message

#: How a sender waits.
REQUEST: Final = 0  # `request()`: a future resolved by the first reply
GATHER: Final = 1  # `gather()`: a future resolved with every reply
LETTER: Final = 2  # `send(response_required=True)`: replies go to the source listener

_UNDELIVERABLE_PREFIX: Final = UndeliverableError.code + ":"


class Pending:
    """One message that waits for replies.

    ``outstanding`` counts the deliveries not yet answered: 1 for a destination, one per
    subscriber for a group (added when the group is fanned out). A delivery answers by a
    reply, a decline (an ``undeliverable`` response) or a handler error.
    """

    __slots__ = (
        "answered",
        "deadline",
        "declines",
        "first_cause",
        "first_error",
        "future",
        "kind",
        "live",
        "message",
        "outstanding",
        "replies",
        "timeout",
    )

    def __init__(self, kind: int, message: Message, future: Future | None) -> None:
        self.kind = kind
        self.message = message
        self.future = future
        self.outstanding = 0
        self.answered = 0
        self.declines = 0
        self.first_error: Message | None = None
        self.first_cause: BaseException | None = None  # the exception behind first_error
        self.replies: list[Message] = []
        self.deadline = 0.0
        self.timeout = 0.0
        self.live = True  # False once finished; its timer entry is then dead


def is_decline(response: Message) -> bool:
    """Whether a response says "no listener took this" rather than answering it."""
    error = response.error
    return error is not None and error.startswith(_UNDELIVERABLE_PREFIX)


class TimerHeap:
    """Deadlines of pending messages in one heap, served by one task.

    Finished entries are left in place and skipped when they reach the top; the heap is
    rebuilt without them once they are more than half of it, so memory stays bounded
    by twice the number of live timers.
    """

    __slots__ = ("_dead", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Pending]] = []
        self._seq = itertools.count()
        self._dead = 0

    def __len__(self) -> int:
        return len(self._heap) - self._dead

    def push(self, pending: Pending) -> bool:
        """Add a timer; return whether it is now the earliest one."""
        heap = self._heap
        heapq.heappush(heap, (pending.deadline, next(self._seq), pending))
        return heap[0][2] is pending

    def discard(self, pending: Pending) -> None:
        """Note that a pending entry finished before its deadline."""
        self._dead += 1
        if self._dead > 256 and self._dead * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].live]
            heapq.heapify(self._heap)
            self._dead = 0

    def pop_expired(self, now: float, expire: Callable[[Pending], Any]) -> float | None:
        """Expire every live entry due by ``now``; return the next deadline, or None."""
        while self._heap:  # re-read: expiring may compact the heap into a new list
            deadline, _, pending = self._heap[0]
            if not pending.live:
                heapq.heappop(self._heap)
                self._dead -= 1
            elif deadline <= now:
                heapq.heappop(self._heap)
                pending.deadline = 0.0  # popped: finishing it must not count a dead entry
                expire(pending)
            else:
                return deadline
        return None

    def clear(self) -> list[Pending]:
        """Remove every entry; return the live ones."""
        live = [entry[2] for entry in self._heap if entry[2].live]
        self._heap.clear()
        self._dead = 0
        return live


class Expired:
    """IDs of messages whose wait ended, kept for a while so late replies can be dropped.

    A set for lookups and a deque for first-in-first-out eviction: evicting the oldest
    key of a dict with ``next(iter(d))`` would rescan every slot deleted before it.
    """

    __slots__ = ("_ids", "_limit", "_order")

    def __init__(self, limit: int = 65536) -> None:
        self._ids: set[ListenerId] = set()
        self._order: collections.deque[ListenerId] = collections.deque()
        self._limit = limit

    def add(self, message_id: ListenerId) -> None:
        ids = self._ids
        if message_id in ids:
            return
        ids.add(message_id)
        order = self._order
        order.append(message_id)
        if len(order) > self._limit:
            ids.discard(order.popleft())

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids
