"""Peer set-ups: what dispatchio is compared against, measured in the same run.

Each function is a context manager that builds one peer and yields the loop to time
(``loop(n)`` does the operation ``n`` times); the asynchronous ones are entered in the
event loop that runs them (`_harness.event_loop`). Every library is imported lazily,
so importing this module is cheap, and a missing library fails only its own set-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from _harness import AsyncLoopFn, Config, LoopFn

FANOUT = 1_000

# Round trips per timed repeat (scaled by Config.async_scale).
N_ASYNCIO_RT = 40_000
N_THESPIAN_RT = 20_000
N_PYKKA_RT = 2_500
N_ANYIO_RT = 10_000


def scaled(n: int, cfg: Config) -> int:
    return max(100, int(n * cfg.async_scale))


# --------------------------------------------------------------------------- sync, one target


@contextlib.contextmanager
def direct_call() -> Iterator[LoopFn]:
    """A plain Python function call with one argument."""

    def target(value: int) -> int:
        return value

    def loop(n: int) -> None:
        f = target
        for _ in itertools.repeat(None, n):
            f(1)

    yield loop


@contextlib.contextmanager
def blinker_send() -> Iterator[LoopFn]:
    """blinker ``Signal.send`` to one connected receiver."""
    from blinker import Signal

    sig = Signal()

    def receiver(sender: object, **kw: Any) -> object:
        return kw["value"]

    sig.connect(receiver)  # weak by default: ``receiver`` lives as long as this frame

    def loop(n: int) -> None:
        send = sig.send
        for _ in itertools.repeat(None, n):
            send(None, value=1)

    try:
        yield loop
    finally:
        sig.disconnect(receiver)


@contextlib.contextmanager
def pypubsub_send() -> Iterator[LoopFn]:
    """PyPubSub ``pub.sendMessage`` to one listener."""
    from pubsub import pub

    topic = "bench_one"

    def listener(value: int) -> int:
        return value

    pub.subscribe(listener, topic)

    def loop(n: int) -> None:
        send = pub.sendMessage
        for _ in itertools.repeat(None, n):
            send(topic, value=1)

    try:
        yield loop
    finally:
        pub.unsubscribe(listener, topic)


# --------------------------------------------------------------------------- fan-out


def _make_receivers(count: int) -> list[Callable[..., object]]:
    """Distinct callables (libraries dedupe identical receivers)."""

    def make(i: int) -> Callable[..., object]:
        def receiver(*args: object, **kw: object) -> object:
            return i

        return receiver

    return [make(i) for i in range(count)]


@contextlib.contextmanager
def blinker_fanout() -> Iterator[LoopFn]:
    """blinker ``Signal.send`` to FANOUT receivers (divide by FANOUT for per-recipient)."""
    from blinker import Signal

    sig = Signal()
    receivers = _make_receivers(FANOUT)
    for r in receivers:
        sig.connect(r)

    def loop(n: int) -> None:
        send = sig.send
        for _ in itertools.repeat(None, n):
            send(None, value=1)

    try:
        yield loop
    finally:
        for r in receivers:
            sig.disconnect(r)


@contextlib.contextmanager
def pypubsub_fanout() -> Iterator[LoopFn]:
    """PyPubSub ``pub.sendMessage`` to FANOUT listeners (divide by FANOUT for per-recipient)."""
    from pubsub import pub

    topic = "bench_fanout"
    listeners: list[Callable[..., object]] = []

    def make(i: int) -> Callable[..., object]:
        def listener(value: int) -> int:
            return i

        return listener

    for i in range(FANOUT):
        fn = make(i)
        listeners.append(fn)  # pubsub keeps weak references
        pub.subscribe(fn, topic)

    def loop(n: int) -> None:
        send = pub.sendMessage
        for _ in itertools.repeat(None, n):
            send(topic, value=1)

    try:
        yield loop
    finally:
        for fn in listeners:
            pub.unsubscribe(fn, topic)


# --------------------------------------------------------------------------- async request/reply


@contextlib.asynccontextmanager
async def asyncio_raw() -> AsyncIterator[AsyncLoopFn]:
    """Raw asyncio: future + Queue request/reply, sequential round trips (asyncio only)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def server() -> None:
        while True:
            payload, fut = await queue.get()
            fut.set_result(payload)

    server_task = asyncio.create_task(server())

    async def requests(n: int) -> None:
        put = queue.put_nowait
        create_future = loop.create_future
        for i in range(n):
            fut: asyncio.Future[int] = create_future()
            put((i, fut))
            await fut

    try:
        yield requests
    finally:
        server_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server_task


async def suspend_once(value: Any) -> Any:
    """A handler's work that suspends once (through anyio, as the dispatchio side's does)."""
    import anyio.lowlevel

    await anyio.lowlevel.checkpoint()
    return value


@contextlib.asynccontextmanager
async def asyncio_raw_suspending() -> AsyncIterator[AsyncLoopFn]:
    """`asyncio_raw` whose server awaits `suspend_once` for each request before answering:
    the peer of a dispatchio handler that suspends once."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()

    async def server() -> None:
        while True:
            payload, fut = await queue.get()
            fut.set_result(await suspend_once(payload))

    server_task = asyncio.create_task(server())

    async def requests(n: int) -> None:
        put = queue.put_nowait
        create_future = loop.create_future
        for i in range(n):
            fut: asyncio.Future[int] = create_future()
            put((i, fut))
            await fut

    try:
        yield requests
    finally:
        server_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server_task


@contextlib.asynccontextmanager
async def asyncio_raw_letter_request() -> AsyncIterator[AsyncLoopFn]:
    """`asyncio_raw` where each operation is a letter (no future: nobody waits for it)
    and then a request, both through the one queue: the peer of dispatchio's letter +
    request row."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, asyncio.Future[int] | None]] = asyncio.Queue()
    letters = [0]

    async def server() -> None:
        while True:
            payload, fut = await queue.get()
            if fut is None:
                letters[0] += payload
            else:
                fut.set_result(payload)

    server_task = asyncio.create_task(server())

    async def requests(n: int) -> None:
        put = queue.put_nowait
        create_future = loop.create_future
        for i in range(n):
            put((i, None))
            fut: asyncio.Future[int] = create_future()
            put((i, fut))
            await fut

    try:
        yield requests
    finally:
        server_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server_task


@contextlib.asynccontextmanager
async def anyio_streams() -> AsyncIterator[AsyncLoopFn]:
    """anyio memory object streams: request stream + reply stream, sequential round trips.

    Uses the default (unbuffered, rendezvous) streams and awaited ``send``, the idiomatic
    pattern; ``send_nowait`` into buffered streams would skip anyio's checkpoints.
    """
    import anyio

    req_send, req_recv = anyio.create_memory_object_stream[int]()
    rep_send, rep_recv = anyio.create_memory_object_stream[int]()

    async def server() -> None:
        async for payload in req_recv:
            await rep_send.send(payload)

    async def requests(n: int) -> None:
        send = req_send.send
        receive = rep_recv.receive
        for i in range(n):
            await send(i)
            await receive()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        try:
            yield requests
        finally:
            tg.cancel_scope.cancel()


@contextlib.contextmanager
def thespian_ask() -> Iterator[LoopFn]:
    """Thespian ``ActorSystem("simpleSystemBase").ask`` round trips (blocking)."""
    from thespian.actors import ActorSystem

    from _thespian_actor import EchoActor

    asys = ActorSystem("simpleSystemBase")
    try:
        actor = asys.createActor(EchoActor)

        def loop(n: int) -> None:
            ask = asys.ask
            for i in range(n):
                ask(actor, i, 5)

        yield loop
    finally:
        asys.shutdown()


@contextlib.contextmanager
def pykka_ask() -> Iterator[LoopFn]:
    """Pykka ``ThreadingActor`` ``ask`` round trips (blocking)."""
    import pykka

    class Echo(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Echo.start()
    try:

        def loop(n: int) -> None:
            ask = ref.ask
            for i in range(n):
                ask(i, timeout=5)

        yield loop
    finally:
        ref.stop()
