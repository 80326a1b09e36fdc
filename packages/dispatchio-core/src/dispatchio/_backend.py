"""The few event-loop primitives the dispatcher's hot path needs, per anyio backend.

anyio's portable primitives cost microseconds each on asyncio (an `anyio.Event` is
about 1.3 us, a cancel scope about 5 us), too much per message. The dispatcher instead
uses native futures: asyncio's own, or `TrioFuture`, a minimal future with the same
``done`` / ``set_result`` / ``set_exception`` / ``await`` surface built on trio's
low-level task parking.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Protocol

from dispatchio._errors import DispatchError


class Future(Protocol):
    """What the dispatcher needs from a future (a subset of `asyncio.Future`)."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...
    def __await__(self) -> Generator[Any, Any, Any]: ...


class Backend:
    """The running event loop's future factory and clock."""

    __slots__ = ("clock", "name", "new_future")

    def __init__(
        self, name: str, new_future: Callable[[], Future], clock: Callable[[], float]
    ) -> None:
        self.name = name
        self.new_future = new_future
        self.clock = clock


def current_backend() -> Backend:
    """Return the primitives of the event loop running in this thread.

    Raises:
        DispatchError: no asyncio or trio event loop is running here.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # BaseEventLoop.time() is time.monotonic(): call that directly (a Python call
        # less per deadline); a loop with a clock of its own (uvloop) keeps it.
        clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        return Backend("asyncio", loop.create_future, clock)
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            _bind_trio()
            return Backend("trio", TrioFuture, trio.current_time)
    raise DispatchError("no asyncio or trio event loop is running in this thread")


class _Trio:
    """trio's low-level functions, looked up once (``import trio`` is not free per call)."""

    current_task: Callable[[], Any]
    reschedule: Callable[[Any], None]
    wait_task_rescheduled: Callable[[Callable[[Any], Any]], Any]
    abort_succeeded: Any


def _bind_trio() -> None:
    import trio

    _Trio.current_task = trio.lowlevel.current_task
    _Trio.reschedule = trio.lowlevel.reschedule
    _Trio.wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
    _Trio.abort_succeeded = trio.lowlevel.Abort.SUCCEEDED


class TrioFuture:
    """A one-shot future for trio: one task awaits it, anyone in the loop thread settles it.

    Built only once `current_backend` found trio running (which binds `_Trio`).
    """

    __slots__ = ("_done", "_error", "_result", "_task")

    def __init__(self) -> None:
        self._task: Any = None  # the parked task, until woken or cancelled
        self._done = False  # a result or an exception is set, or the wait was cancelled
        self._result: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._result = result
        self._done = True
        task = self._task  # `_wake`, written out: twice per queued round trip
        if task is not None:
            self._task = None
            _Trio.reschedule(task)

    def set_exception(self, exception: BaseException, /) -> None:
        self._error = exception
        self._done = True
        self._wake()

    def _wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            _Trio.reschedule(task)

    def _abort(self, _: Any) -> Any:
        self._task = None
        self._done = True
        return _Trio.abort_succeeded

    def __await__(self) -> Generator[Any, Any, Any]:
        if not self._done:
            self._task = _Trio.current_task()
            yield from _Trio.wait_task_rescheduled(self._abort).__await__()
        error = self._error
        if error is not None:
            # Raised without keeping a reference here or in the future (which its
            # traceback would lead back to): no cycle for the collector to find.
            self._error = None
            try:
                raise error
            finally:
                del error
        return self._result


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Continue, in the current task, a coroutine whose first step already ran here.

    The dispatcher starts a handler's coroutine by hand (``coro.send(None)``) so that a
    handler which never suspends costs no task at all. When it does suspend, the task
    that started it carries on with this function: every value the handler yields goes
    to the event loop unchanged and every value or exception (cancellation included)
    the loop sends back goes to the handler, so the handler only ever runs in the one
    task, as if it had been awaited normally.
    """
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


@types.coroutine
def resume_in(
    context: contextvars.Context, coro: Coroutine[Any, Any, Any], yielded: Any
) -> Generator[Any, Any, Any]:
    """`resume`, running each step of ``coro`` in ``context`` (where its first step ran)."""
    run = context.run
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = run(coro.send, sent)
            except StopIteration as stop:
                return stop.value


@types.coroutine
def resume_next(
    context: contextvars.Context, coro: Coroutine[Any, Any, Any], exc: BaseException | None
) -> Generator[Any, Any, Any]:
    """`resume_in`, its next step run at once: with ``exc`` thrown in, or else with None
    sent (the answer to a bare yield, one trip through the event loop, which the caller
    has just made)."""
    try:
        step = (coro.send, None) if exc is None else (coro.throw, exc)
        yielded = context.run(*step)
    except StopIteration as stop:
        return stop.value
    return (yield from resume_in(context, coro, yielded))
