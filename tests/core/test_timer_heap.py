"""The timer heap behind reply timeouts: what expires, in which order, and its memory bound."""

from __future__ import annotations

from dispatchio import Message
from dispatchio._replies import REQUEST, Pending, TimerHeap


def _pending(deadline: float) -> Pending:
    pending = Pending(REQUEST, Message("t"), None)
    pending.deadline = deadline
    return pending


def _finish(heap: TimerHeap, pending: Pending) -> None:
    pending.live = False
    heap.discard(pending)


def test_entries_expire_in_deadline_order_and_finished_ones_never() -> None:
    heap = TimerHeap()
    entries = [_pending(d) for d in (3.0, 1.0, 2.0, 4.0)]
    for pending in entries:
        heap.push(pending)
    _finish(heap, entries[1])  # the earliest: at the top
    _finish(heap, entries[3])  # the latest: deep inside
    expired: list[Pending] = []
    next_deadline = heap.pop_expired(10.0, expired.append)
    assert (expired, next_deadline) == ([entries[2], entries[0]], None)


def test_pop_expired_stops_at_the_first_live_deadline_after_now() -> None:
    heap = TimerHeap()
    entries = [_pending(d) for d in (1.0, 2.0, 3.0)]
    for pending in entries:
        heap.push(pending)
    expired: list[Pending] = []
    assert heap.pop_expired(2.0, expired.append) == 3.0
    assert expired == entries[:2]


def test_finishing_in_deadline_order_keeps_the_heap_empty() -> None:
    heap = TimerHeap()
    for n in range(1000):
        pending = _pending(float(n))
        heap.push(pending)
        _finish(heap, pending)
    assert heap.pop_expired(1e9, lambda p: None) is None
    assert heap._heap == []


def test_finished_entries_out_of_order_stay_bounded_by_twice_the_live_ones() -> None:
    heap = TimerHeap()
    first = _pending(0.0)  # never finishes: keeps every later entry off the top
    heap.push(first)
    for n in range(1, 2000):
        pending = _pending(float(n))
        heap.push(pending)
        _finish(heap, pending)
    assert len(heap._heap) <= 2 * 1 + 257
    expired: list[Pending] = []
    heap.pop_expired(1e9, expired.append)
    assert expired == [first]
