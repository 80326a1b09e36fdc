"""Replies owed to senders: the pending table, expired IDs, the timer heap, letters.

A sender that waits (``request``, ``gather``, ``send(response_required=True)``) gets
a `Pending` entry keyed by message ID. Every response, local or from another
process, goes through `Replies.route_response`, which counts it against the entry and
resolves the sender's future or hands the letter to its source listener. Deadlines
live in one `TimerHeap` served by one task (`Replies.run_timers`). Built by the
scheduler, which hands in ``enqueue`` (the way back up: a reply to a listener takes
the queue like any message); the mesh and the dispatcher call it too.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from dispatchio._errors import (
    DispatchError,
    ReplyTimeoutError,
    UndeliverableError,
    error_from_message,
    format_error,
)
from dispatchio._message import Message, response_to

if TYPE_CHECKING:
    from dispatchio._backend import Backend, Future
    from dispatchio._listener import MessageListener
    from dispatchio._message import ListenerId, MessageIds
    from dispatchio._observers import Observers

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

    ``owed``: how many of those replies each other process still owes (the mesh keeps
    it, for failing them with ``peer_lost`` if that process dies). It lives and dies
    with the entry, so a wait that ends by a timeout, a cancellation or a first reply
    leaves nothing behind in the mesh.
    """

    __slots__ = (
        "answered",
        "deadline",
        "first_cause",
        "first_error",
        "future",
        "kind",
        "live",
        "message",
        "outstanding",
        "owed",
        "replies",
        "timeout",
    )

    def __init__(self, kind: int, message: Message, future: Future | None) -> None:
        self.kind = kind
        self.message = message
        self.future = future
        self.outstanding = 0
        self.answered = 0
        self.first_error: Message | None = None
        self.first_cause: BaseException | None = None  # the exception behind first_error
        self.replies: list[Message] = []
        self.owed: dict[ListenerId, int] | None = None  # set by the mesh if sent out
        self.deadline = 0.0
        self.timeout = 0.0
        self.live = True  # False once finished; its timer entry is then dead


def is_decline(response: Message) -> bool:
    """Whether a response says "no listener took this" rather than answering it."""
    error = response.error
    return error is not None and error.startswith(_UNDELIVERABLE_PREFIX)


class TimerHeap:
    """Deadlines of pending messages in one heap, served by one task.

    A finished entry at the top is removed at once (with the finished ones behind it);
    others are left in place and skipped when they reach the top, and the heap is
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

    @property
    def entries(self) -> int:
        """Entries held, finished ones included (what the heap costs in memory)."""
        return len(self._heap)

    def push(self, pending: Pending) -> bool:
        """Add a timer; return whether it is now the earliest one."""
        heap = self._heap
        heapq.heappush(heap, (pending.deadline, next(self._seq), pending))
        return heap[0][2] is pending

    def discard(self, pending: Pending) -> None:
        """Note that a pending entry finished before its deadline."""
        heap = self._heap
        if heap and heap[0][2] is pending:
            # The usual case (replies come in the order of their deadlines): drop it now,
            # with any finished entries behind it, so the heap stays small.
            heapq.heappop(heap)
            while heap and not heap[0][2].live:
                heapq.heappop(heap)
                self._dead -= 1
            return
        self._dead += 1
        if self._dead > 256 and self._dead * 2 > len(heap):
            self._heap = [entry for entry in heap if entry[2].live]
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

    def clear(self) -> None:
        """Remove every entry."""
        self._heap.clear()
        self._dead = 0


class Expired:
    """IDs chosen by senders of messages whose wait ended, kept for a while so late
    replies can be dropped (the dispatcher's own IDs need no memory: `MessageIds`).

    Between ``limit / 2`` and ``limit`` of the newest IDs are kept, in one dict (insertion
    ordered). When it passes ``limit`` it is rebuilt with the newest half: rebuilding,
    not deleting the oldest keys one by one, because ``next(iter(d))`` after deletions
    rescans every deleted slot before it. One dict store per ID, no deque.
    """

    __slots__ = ("_ids", "_limit")

    def __init__(self, limit: int = 65536) -> None:
        self._ids: dict[ListenerId, None] = {}
        self._limit = limit

    def add(self, message_id: ListenerId) -> None:
        ids = self._ids
        ids[message_id] = None  # an ID already here keeps its place
        if len(ids) > self._limit:
            self._ids = dict.fromkeys(itertools.islice(ids, len(ids) - self._limit // 2, None))

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class Replies:
    """Every reply this dispatcher still waits for, and where each response goes."""

    __slots__ = (
        "eager_id",
        "early",
        "enqueue",
        "expired",
        "ids",
        "listeners",
        "observers",
        "pending",
        "process_id",
        "stats",
        "timer_deadline",
        "timer_wake",
        "timers",
    )

    def __init__(
        self,
        process_id: ListenerId,
        listeners: dict[ListenerId, MessageListener],
        observers: Observers,
        enqueue: Callable[[Message], None],
        ids: MessageIds,
    ) -> None:
        self.process_id = process_id
        self.ids = ids
        self.listeners = listeners
        self.observers = observers
        self.stats = observers.stats
        self.enqueue = enqueue
        self.pending: dict[ListenerId, Pending] = {}
        self.expired = Expired()
        self.timers = TimerHeap()
        self.timer_wake: Future | None = None
        self.timer_deadline = math.inf
        # The ID of the request whose handler `Scheduler.start_eager` is starting (before
        # the request has a pending entry), and an answer that handler gave through
        # ``reply`` meanwhile, with its cause.
        self.eager_id: ListenerId | None = None
        self.early: tuple[Message, BaseException | None] | None = None

    def wait_for(self, pending: Pending, backend: Backend, timeout: float) -> None:
        """Enter ``pending`` in the table, with a timer unless ``timeout`` is ``math.inf``."""
        message_id = pending.message.id
        assert message_id is not None
        self.pending[message_id] = pending
        if timeout == math.inf:
            return
        pending.timeout = timeout
        pending.deadline = backend.clock() + timeout
        if self.timers.push(pending) and pending.deadline < self.timer_deadline:
            wake = self.timer_wake
            if wake is not None and not wake.done():  # done: cancelled by the timer's deadline
                self.timer_wake = None
                wake.set_result(None)

    def route_response(self, response: Message, cause: BaseException | None = None) -> None:
        """Take a response to the sender that waits for it, or to its source listener."""
        pending = self.pending.get(response.id)  # type: ignore[arg-type]
        if pending is None:
            if response.id == self.eager_id and self.eager_id is not None:
                if self.early is None:
                    self.early = (response, cause)
                else:
                    self.stats.late_replies += 1
                return
            # Not awaited any more (late), or never awaited: a reply to a plain letter.
            if self.ids.is_awaited(response.id) or response.id in self.expired:
                self.stats.late_replies += 1
            else:
                self.to_source(response)
            return
        kind = pending.kind
        pending.outstanding -= 1
        if response.error is None:
            pending.answered += 1
            if kind == REQUEST:
                self.finish(pending)
                future = pending.future  # `resolve`, written out: the hot path of request()
                if future is not None and not future.done():
                    future.set_result(response)
                return
            if kind == GATHER:
                pending.replies.append(response)
            else:
                self.to_source(response)
        elif is_decline(response):
            pass  # a decline is no answer and no error: only "nobody took it" counts, below
        else:
            if pending.first_error is None:
                pending.first_error = response
                pending.first_cause = cause
            if kind == GATHER:
                pending.replies.append(response)
            elif kind == LETTER:
                self.deliver_letter(response)
        if pending.outstanding > 0:
            return
        # Every recipient has answered, declined or failed.
        self.finish(pending)
        if kind == GATHER:
            self.resolve(pending, pending.replies)
        elif kind == REQUEST:
            if pending.first_error is not None:
                self.reject(pending, pending.first_error, pending.first_cause)
            else:
                self.reject(pending, response, cause)
        elif not pending.answered and pending.first_error is None:
            self.deliver_letter(response)  # a letter every recipient declined

    def to_source(self, response: Message) -> None:
        if response.destination in self.listeners:
            self.enqueue(response)
        else:
            self.stats.dropped_replies += 1

    def abandon(self, pending: Pending) -> None:
        """The sender stopped waiting (cancelled): a reply arriving later is late."""
        self.finish(pending)
        self.remember(pending.message.id)  # type: ignore[arg-type]

    def remember(self, message_id: ListenerId) -> None:
        """A wait for ``message_id`` ended: make a reply arriving later count as late."""
        if not self.ids.is_awaited(message_id):
            self.expired.add(message_id)

    def finish(self, pending: Pending) -> None:
        """Stop waiting: forget the pending entry and kill its timer."""
        if not pending.live:
            return
        pending.live = False
        message_id = pending.message.id
        assert message_id is not None
        if self.pending.get(message_id) is pending:
            del self.pending[message_id]
        if pending.deadline:
            self.timers.discard(pending)
        if pending.kind != LETTER or pending.outstanding > 0:
            # Whoever still answers (another subscriber, a second reply()) is late. The
            # test of `MessageIds.is_awaited`, inlined: it runs once per wait.
            ids = self.ids
            if not (
                message_id.__class__ is int
                and message_id & 1
                and ids.start < message_id <= ids.last_awaited
            ):
                self.expired.add(message_id)

    @staticmethod
    def resolve(pending: Pending, value: Any) -> None:
        future = pending.future
        if future is not None and not future.done():
            future.set_result(value)

    @staticmethod
    def reject(pending: Pending, response: Message, cause: BaseException | None) -> None:
        future = pending.future
        if future is not None and not future.done():
            error = error_from_message(response)
            assert error is not None
            if cause is not None:
                error.__cause__ = cause
            future.set_exception(error)

    def deliver_letter(self, letter: Message) -> None:
        """Return a failure to the source listener of a ``send`` (returned to sender)."""
        self.observers.returned(letter)
        self.to_source(letter)

    def return_letter(self, message: Message, error: DispatchError) -> None:
        """Return an undeliverable ``send`` to its source listener, content and all."""
        self.deliver_letter(
            response_to(
                message,
                message.content,
                None,
                self.process_id,
                format_error(UndeliverableError.code, str(error)),
            )
        )

    async def run_timers(self, backend: Backend) -> None:
        """The timer task: expire every wait whose deadline passed."""
        timers = self.timers
        while True:
            deadline = timers.pop_expired(backend.clock(), self.expire)
            self.timer_deadline = math.inf if deadline is None else deadline
            wake = self.timer_wake = backend.new_future()
            if deadline is None:
                await wake
            else:
                with anyio.move_on_after(max(deadline - backend.clock(), 0)):
                    await wake
            self.timer_wake = None

    def expire(self, pending: Pending) -> None:
        message = pending.message
        self.finish(pending)
        self.remember(message.id)  # type: ignore[arg-type]
        if pending.kind == GATHER:
            self.resolve(pending, pending.replies)
            return
        self.observers.timed_out(message)
        error = format_error(
            ReplyTimeoutError.code,
            f"no reply to {message.type!r} from {message.destination or message.group!r}"
            f" within {pending.timeout:g} s",
        )
        response = response_to(message, None, None, self.process_id, error)
        if pending.kind == LETTER:
            self.deliver_letter(response)
        else:
            self.reject(pending, response, None)

    def close(self) -> None:
        """The dispatcher is closing: every sender still waiting gets `DispatchError`."""
        self.timer_wake = None
        for pending in list(self.pending.values()):
            self.finish(pending)
            future = pending.future
            if future is not None and not future.done():
                future.set_exception(
                    DispatchError("the dispatcher was closed before a reply arrived")
                )
        self.timers.clear()
        self.timer_deadline = math.inf
