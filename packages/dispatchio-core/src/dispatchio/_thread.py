"""Running a dispatcher in a background thread, for programs that are not async."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from dispatchio._errors import DispatcherNotRunningError

if TYPE_CHECKING:
    from types import TracebackType

    from dispatchio._dispatcher import MessageDispatcher
    from dispatchio._message import Message


class DispatcherThread:
    """A dispatcher running in its own thread, driven from synchronous code.

    Create it with `MessageDispatcher.in_thread`. Every method blocks the calling thread
    until the dispatcher thread has done the work, and is safe to call from any thread
    other than the dispatcher's own. Handlers run in the dispatcher thread: to work on
    messages in your thread instead, route them to a `queue.Queue` rule and poll it (for
    example once per game frame), answering with `reply`.

    Use it as a context manager, or call `start` and `stop` yourself.
    """

    def __init__(self, dispatcher: MessageDispatcher, *, backend: str = "asyncio") -> None:
        self.dispatcher = dispatcher
        self.backend = backend
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None

    def start(self) -> DispatcherThread:
        """Start the thread and the dispatcher in it; return self.

        Raises:
            DispatchError: the dispatcher is already running.
        """
        if self._stack is not None:
            raise RuntimeError("this DispatcherThread is already started")
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal(self.backend))
            stack.enter_context(portal.wrap_async_context_manager(self.dispatcher))
            self._stack = stack.pop_all()
        self._portal = portal
        return self

    def stop(self) -> None:
        """Stop the dispatcher and join the thread (see `MessageDispatcher` on shutdown)."""
        stack, self._stack, self._portal = self._stack, None, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> DispatcherThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        portal = self._portal
        if portal is None:
            raise DispatcherNotRunningError("the DispatcherThread is not started")
        return portal.call(functools.partial(func, *args, **kwargs))

    def send(self, message: Message, *, reply_timeout: float | None = None) -> None:
        """`MessageDispatcher.send`, from this thread."""
        self._call(self.dispatcher.send, message, reply_timeout=reply_timeout)

    def request(self, message: Message, *, timeout: float | None = None) -> Message:
        """`MessageDispatcher.request`, from this thread: block until the reply or an error."""
        result: Message = self._call(self.dispatcher.request, message, timeout=timeout)
        return result

    def gather(self, message: Message, *, timeout: float | None = None) -> list[Message]:
        """`MessageDispatcher.gather`, from this thread."""
        result: list[Message] = self._call(self.dispatcher.gather, message, timeout=timeout)
        return result

    def reply(self, message: Message, content: Any = None) -> None:
        """`MessageDispatcher.reply`, from this thread (e.g. after taking it off a queue)."""
        self._call(self.dispatcher.reply, message, content)

    def send_sync(self, message: Message) -> Any:
        """`MessageDispatcher.send_sync`, run in the dispatcher thread so handlers never race."""
        return self._call(self.dispatcher.send_sync, message)
