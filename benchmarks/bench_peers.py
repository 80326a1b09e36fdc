"""Peer measurements: what dispatchio is compared against, measured in the same run.

Every function here imports its library lazily, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from _harness import Config, Stats, bench_ns, bench_rate, sync_rate

FANOUT = 1_000

# Async round-trip counts per timed repeat (scaled by Config.async_scale).
N_ASYNCIO_RT = 40_000
N_THESPIAN_RT = 20_000
N_PYKKA_RT = 2_500
N_ANYIO_RT = 10_000


def _scaled(n: int, cfg: Config) -> int:
    return max(100, int(n * cfg.async_scale))


# --------------------------------------------------------------------------- sync, one target


def direct_call(cfg: Config) -> Stats:
    """A plain Python function call with one argument."""

    def target(value: int) -> int:
        return value

    def loop(n: int) -> None:
        f = target
        for _ in itertools.repeat(None, n):
            f(1)

    return bench_ns(loop, cfg)


def blinker_send(cfg: Config) -> Stats:
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

    stats = bench_ns(loop, cfg)
    sig.disconnect(receiver)
    return stats


def pypubsub_send(cfg: Config) -> Stats:
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

    stats = bench_ns(loop, cfg)
    pub.unsubscribe(listener, topic)
    return stats


# --------------------------------------------------------------------------- fan-out


def _make_receivers(count: int) -> list[Callable[..., object]]:
    """Distinct callables (libraries dedupe identical receivers)."""

    def make(i: int) -> Callable[..., object]:
        def receiver(*args: object, **kw: object) -> object:
            return i

        return receiver

    return [make(i) for i in range(count)]


def blinker_fanout(cfg: Config) -> Stats:
    """blinker ``Signal.send`` to FANOUT receivers; per-recipient ns."""
    from blinker import Signal

    sig = Signal()
    receivers = _make_receivers(FANOUT)
    for r in receivers:
        sig.connect(r)

    def loop(n: int) -> None:
        send = sig.send
        for _ in itertools.repeat(None, n):
            send(None, value=1)

    stats = bench_ns(loop, cfg)
    for r in receivers:
        sig.disconnect(r)
    return Stats(tuple(s / FANOUT for s in stats.samples))


def pypubsub_fanout(cfg: Config) -> Stats:
    """PyPubSub ``pub.sendMessage`` to FANOUT listeners; per-recipient ns."""
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

    stats = bench_ns(loop, cfg)
    for fn in listeners:
        pub.unsubscribe(fn, topic)
    return Stats(tuple(s / FANOUT for s in stats.samples))


# --------------------------------------------------------------------------- async request/reply


def asyncio_raw_rate(cfg: Config) -> Stats:
    """Raw asyncio: future + Queue request/reply, sequential round trips per second."""

    async def main() -> Stats:
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
            return await bench_rate(requests, _scaled(N_ASYNCIO_RT, cfg), cfg)
        finally:
            server_task.cancel()

    return asyncio.run(main())


def anyio_streams_rate(cfg: Config) -> Stats:
    """anyio memory object streams: request stream + reply stream, sequential round trips.

    Uses the default (unbuffered, rendezvous) streams and awaited ``send``, the idiomatic
    pattern; ``send_nowait`` into buffered streams would skip anyio's checkpoints.
    """
    import anyio

    async def main() -> Stats:
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

        result: list[Stats] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(server)
            result.append(await bench_rate(requests, _scaled(N_ANYIO_RT, cfg), cfg))
            tg.cancel_scope.cancel()
        return result[0]

    return anyio.run(main, backend="asyncio")


def thespian_rate(cfg: Config) -> Stats:
    """Thespian ``ActorSystem("simpleSystemBase").ask`` round trips per second."""
    from thespian.actors import ActorSystem

    from _thespian_actor import EchoActor

    asys = ActorSystem("simpleSystemBase")
    try:
        actor = asys.createActor(EchoActor)

        def loop(n: int) -> None:
            ask = asys.ask
            for i in range(n):
                ask(actor, i, 5)

        return sync_rate(loop, _scaled(N_THESPIAN_RT, cfg), cfg)
    finally:
        asys.shutdown()


def pykka_rate(cfg: Config) -> Stats:
    """Pykka ``ThreadingActor`` ``ask`` round trips per second."""
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

        return sync_rate(loop, _scaled(N_PYKKA_RT, cfg), cfg)
    finally:
        ref.stop()
