"""dispatchio set-ups: the loops the benchmark rows time, beside their peers.

Each function builds one dispatchio set-up and returns (or, for the asynchronous ones,
yields from inside the event loop that runs it) the loop to time: ``loop(n)`` does the
operation ``n`` times. ``run.py`` interleaves them with the peers of `bench_peers`.
``dispatchio`` is imported inside the functions only, so this module imports without
it; call `load` first to find out whether it is usable.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import tracemalloc
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from _harness import AsyncLoopFn, LoopFn

if TYPE_CHECKING:
    from dispatchio import BasicMessageListener, Message, MessageDispatcher, PluginManager

FANOUT = 1_000
MANY = 100_000
FEW = 10
N_REQUEST_RT = 40_000  # async round trips per timed repeat (scaled by Config.async_scale)
N_QUEUED_RT = 20_000

_API = ("Message", "MessageDispatcher", "BasicMessageListener", "make_plugin_manager", "hookimpl")


def load() -> ModuleType:
    """Import dispatchio and check that it has the API these benchmarks use.

    Raises:
        ImportError: dispatchio is missing or incomplete (e.g. still being written).
    """
    import dispatchio

    missing = [name for name in _API if not hasattr(dispatchio, name)]
    if missing:
        where = list(getattr(dispatchio, "__path__", []))
        raise ImportError(f"dispatchio at {where} lacks {', '.join(missing)}")
    return dispatchio


def _echo(message: Message) -> Any:
    return message.content


async def _async_echo(message: Message) -> Any:
    return message.content


async def _ready(value: Any) -> Any:
    return value


async def _async_echo_awaiting(message: Message) -> Any:
    """An ``async def`` handler that may suspend (it awaits), answering before it does
    (like a cache hit): the shape the async-request target is about."""
    return await _ready(message.content)


async def _async_echo_suspending(message: Message) -> Any:
    """An ``async def`` handler that suspends once (`bench_peers.suspend_once`'s work)."""
    import anyio.lowlevel

    await anyio.lowlevel.checkpoint()
    return message.content


def _dispatcher(plugins: PluginManager | None = None) -> MessageDispatcher:
    from dispatchio import MessageDispatcher, make_plugin_manager

    if plugins is None:
        plugins = make_plugin_manager(load_entrypoints=False)
    return MessageDispatcher(plugins=plugins)


def _listener(name: str, callback: Callable[[Message], Any] = _echo) -> BasicMessageListener:
    from dispatchio import BasicMessageListener

    listener = BasicMessageListener(name)
    listener.add_rule(type="ping", callback=callback)
    return listener


def _send_loop(dispatcher: MessageDispatcher, destination: str) -> Callable[[int], None]:
    """Build a Message inside the loop and ``send_sync`` it to ``destination``."""
    from dispatchio import Message

    def loop(n: int) -> None:
        send = dispatcher.send_sync
        msg = Message
        for _ in itertools.repeat(None, n):
            send(msg("ping", 1, destination=destination))

    return loop


# --------------------------------------------------------------------------- 1. send_sync


def send_sync_one() -> LoopFn:
    """Message(...) + send_sync to a BasicMessageListener with one sync callback rule."""
    from dispatchio import Message

    d = _dispatcher()
    d.register(_listener("target"))
    if d.send_sync(Message("ping", 1, destination="target")) != 1:
        raise RuntimeError("send_sync did not return the callback's result")
    return _send_loop(d, "target")


def message_only() -> LoopFn:
    """Building the Message alone (to split row 1 into construction and dispatch)."""
    from dispatchio import Message

    def loop(n: int) -> None:
        msg = Message
        for _ in itertools.repeat(None, n):
            msg("ping", 1, destination="target")

    return loop


# --------------------------------------------------------------------------- 2. group fan-out


def group_fanout() -> LoopFn:
    """Group send_sync to FANOUT subscribers (divide by FANOUT for per-recipient)."""
    from dispatchio import Message

    d = _dispatcher()
    for i in range(FANOUT):
        listener = _listener(f"l{i}")
        d.register(listener)
        d.subscribe("g", listener)
    result = d.send_sync(Message("ping", 1, group="g"))
    if len(result) != FANOUT:
        raise RuntimeError(f"group send reached {len(result)} of {FANOUT} subscribers")

    def loop(n: int) -> None:
        send = d.send_sync
        msg = Message
        for _ in itertools.repeat(None, n):
            send(msg("ping", 1, group="g"))

    return loop


# --------------------------------------------------------------------------- 3. async request


@contextlib.asynccontextmanager
async def requests(callback: Callable[[Message], Any] = _echo) -> AsyncIterator[AsyncLoopFn]:
    """A running dispatcher; yields a loop of sequential ``await d.request(...)``.

    With the default sync callback the dispatcher may answer inline (no task switch);
    ``_async_echo`` (see `async_requests`) is answered inline too; `awaiting_requests`
    and `suspending_requests` go through the scheduler, `queued_requests` through the
    queue.
    """
    from dispatchio import Message

    d = _dispatcher()
    d.register(_listener("target", callback))
    async with d:
        reply = await d.request(Message("ping", 7, destination="target"), timeout=5.0)
        if reply.content != 7:
            raise RuntimeError(f"unexpected reply {reply!r}")

        async def loop(n: int) -> None:
            request = d.request
            msg = Message
            for i in range(n):
                await request(msg("ping", i, destination="target"), timeout=5.0)

        yield loop


def async_requests() -> contextlib.AbstractAsyncContextManager[AsyncLoopFn]:
    """`requests` to an ``async def`` callback rule with no ``await``: it cannot suspend,
    so the dispatcher runs it to its end inline, like a plain callback."""
    return requests(_async_echo)


def awaiting_requests() -> contextlib.AbstractAsyncContextManager[AsyncLoopFn]:
    """`requests` to an ``async def`` callback rule that awaits (so may suspend) and
    answers before suspending: through the scheduler, started in the requester's call
    on asyncio, queued on trio."""
    return requests(_async_echo_awaiting)


def suspending_requests() -> contextlib.AbstractAsyncContextManager[AsyncLoopFn]:
    """`requests` to an ``async def`` callback rule that suspends once before answering."""
    return requests(_async_echo_suspending)


@contextlib.asynccontextmanager
async def queued_requests() -> AsyncIterator[AsyncLoopFn]:
    """Sequential ``await d.request(...)`` to the same ``async def`` callback, each behind
    a letter queued just before it (to a sync callback rule of another listener), so the
    request takes the queue: the leader runs the letter, then the request's handler.
    Each timed operation is one ``send`` plus one ``request``."""
    from dispatchio import Message

    d = _dispatcher()
    d.register(_listener("target", _async_echo))
    d.register(_listener("sink"))
    async with d:
        reply = await d.request(Message("ping", 7, destination="target"), timeout=5.0)
        if reply.content != 7:
            raise RuntimeError(f"unexpected reply {reply!r}")

        async def loop(n: int) -> None:
            request = d.request
            send = d.send
            msg = Message
            for i in range(n):
                await send(msg("ping", i, destination="sink"))
                await request(msg("ping", i, destination="target"), timeout=5.0)

        yield loop


# --------------------------------------------------------------------------- 4. many listeners


def listener_scale() -> tuple[LoopFn, LoopFn, float]:
    """send_sync to one listener among FEW and among MANY; bytes per registered listener."""
    few = _dispatcher()
    for i in range(FEW):
        few.register(_listener(f"l{i}"))

    many = _dispatcher()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(MANY):
            many.register(_listener(f"l{i}"))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    target = f"l{FEW // 2}"
    return _send_loop(few, target), _send_loop(many, target), (after - before) / MANY


# --------------------------------------------------------------------------- 5. hooks


def hook_loops() -> dict[str, LoopFn]:
    """send_sync with no plugin (``bare``), a plugin with only a non-observation hook
    (``unimplemented``), and an observer of every delivery (``observer``)."""
    from dispatchio import Message, MessageListener, hookimpl, make_plugin_manager

    class TransportsOnly:
        """Implements only a non-observation hook (and registers no transport)."""

        @hookimpl
        def dispatchio_register_transports(self, register: Callable[[str, str], None]) -> None:
            return None

    class Observer:
        """Observes every delivery."""

        def __init__(self) -> None:
            self.count = 0

        @hookimpl
        def dispatchio_message_delivered(
            self, dispatcher: MessageDispatcher, message: Message, listener: MessageListener
        ) -> None:
            self.count += 1

    def build(plugin: object | None) -> MessageDispatcher:
        pm = make_plugin_manager(load_entrypoints=False)
        if plugin is not None:
            pm.register(plugin)
        d = _dispatcher(pm)
        d.register(_listener("target"))
        return d

    observer = Observer()
    dispatchers = {
        "bare": build(None),
        "unimplemented": build(TransportsOnly()),
        "observer": build(observer),
    }
    dispatchers["observer"].send_sync(Message("ping", 1, destination="target"))
    if observer.count != 1:
        raise RuntimeError("observer hook dispatchio_message_delivered was not called")
    return {k: _send_loop(d, "target") for k, d in dispatchers.items()}
