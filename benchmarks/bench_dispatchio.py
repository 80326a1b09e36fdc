"""dispatchio measurements.  Imports ``dispatchio`` lazily (call ``load()`` first)."""

from __future__ import annotations

import gc
import importlib
import itertools
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from _harness import Config, Stats, bench_interleaved, bench_ns, bench_rate

FANOUT = 1_000
MANY = 100_000
FEW = 10
N_REQUEST_RT = 20_000  # async round trips per timed repeat (scaled by Config.async_scale)


_API = ("Message", "MessageDispatcher", "BasicMessageListener", "make_plugin_manager", "hookimpl")


def load() -> ModuleType:
    """Import dispatchio (raises ImportError with the original cause if it is missing)."""
    dio = importlib.import_module("dispatchio")
    missing = [name for name in _API if not hasattr(dio, name)]
    if missing:
        raise ImportError(f"dispatchio lacks {', '.join(missing)} (found at {list(dio.__path__)})")
    return dio


def _echo(message: Any) -> Any:
    return message.content


def _dispatcher(dio: ModuleType, plugins: Any = None) -> Any:
    if plugins is None:
        plugins = dio.make_plugin_manager(load_entrypoints=False)
    return dio.MessageDispatcher(plugins=plugins)


def _listener(dio: ModuleType, name: str, callback: Callable[[Any], Any] = _echo) -> Any:
    listener = dio.BasicMessageListener(name)
    listener.add_rule(type="ping", callback=callback)
    return listener


def _send_loop(dio: ModuleType, dispatcher: Any, destination: str) -> Callable[[int], None]:
    """Build a Message inside the loop and ``send_sync`` it to ``destination``."""
    message_cls = dio.Message

    def loop(n: int) -> None:
        send = dispatcher.send_sync
        msg = message_cls
        for _ in itertools.repeat(None, n):
            send(msg("ping", 1, destination=destination))

    return loop


# --------------------------------------------------------------------------- 1. send_sync


def send_sync_one(cfg: Config) -> Stats:
    """Message(...) + send_sync to a BasicMessageListener with one sync callback rule."""
    dio = load()
    d = _dispatcher(dio)
    d.register(_listener(dio, "target"))
    loop = _send_loop(dio, d, "target")
    if d.send_sync(dio.Message("ping", 1, destination="target")) != 1:
        raise RuntimeError("send_sync did not return the callback's result")
    return bench_ns(loop, cfg)


# --------------------------------------------------------------------------- 2. group fan-out


def group_fanout(cfg: Config) -> Stats:
    """Group send_sync to FANOUT subscribers; per-recipient ns."""
    dio = load()
    d = _dispatcher(dio)
    for i in range(FANOUT):
        listener = _listener(dio, f"l{i}")
        d.register(listener)
        d.subscribe("g", listener)
    message_cls = dio.Message
    result = d.send_sync(message_cls("ping", 1, group="g"))
    if len(result) != FANOUT:
        raise RuntimeError(f"group send reached {len(result)} of {FANOUT} subscribers")

    def loop(n: int) -> None:
        send = d.send_sync
        msg = message_cls
        for _ in itertools.repeat(None, n):
            send(msg("ping", 1, group="g"))

    stats = bench_ns(loop, cfg)
    return Stats(tuple(s / FANOUT for s in stats.samples))


# --------------------------------------------------------------------------- 3. async request


def request_rate(cfg: Config, backend: str) -> Stats:
    """Sequential ``await d.request(...)`` round trips per second on ``backend``."""
    import anyio

    dio = load()

    async def main() -> Stats:
        d = _dispatcher(dio)
        d.register(_listener(dio, "target"))
        message_cls = dio.Message
        async with d:
            reply = await d.request(message_cls("ping", 7, destination="target"), timeout=5.0)
            if reply.content != 7:
                raise RuntimeError(f"unexpected reply {reply!r}")

            async def requests(n: int) -> None:
                request = d.request
                msg = message_cls
                for i in range(n):
                    await request(msg("ping", i, destination="target"), timeout=5.0)

            return await bench_rate(requests, max(100, int(N_REQUEST_RT * cfg.async_scale)), cfg)

    result: Stats = anyio.run(main, backend=backend)
    return result


# --------------------------------------------------------------------------- 4. many listeners


@dataclass(frozen=True)
class ScaleResult:
    few: Stats
    many: Stats
    bytes_per_listener: float


def listener_scale(cfg: Config) -> ScaleResult:
    """send_sync to one listener among MANY vs among FEW; memory per registered listener."""
    dio = load()
    few = _dispatcher(dio)
    for i in range(FEW):
        few.register(_listener(dio, f"l{i}"))

    gc.collect()
    many = _dispatcher(dio)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(MANY):
            many.register(_listener(dio, f"l{i}"))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_listener = (after - before) / MANY

    target = f"l{FEW // 2}"
    stats = bench_interleaved(
        {"few": _send_loop(dio, few, target), "many": _send_loop(dio, many, target)}, cfg
    )
    return ScaleResult(stats["few"], stats["many"], per_listener)


# --------------------------------------------------------------------------- 5. hooks


@dataclass(frozen=True)
class HookResult:
    bare: Stats
    unimplemented: Stats
    observer: Stats


def hook_cost(cfg: Config) -> HookResult:
    """send_sync with no plugin / a plugin with only a non-observation hook / an observer."""
    dio = load()
    hookimpl: Callable[[Callable[..., None]], Callable[..., None]] = dio.hookimpl

    class TransportsOnly:
        @hookimpl
        def dispatchio_register_transports(self, register: Any) -> None:
            return None

    class Observer:
        def __init__(self) -> None:
            self.count = 0

        @hookimpl
        def dispatchio_message_delivered(
            self, dispatcher: Any, message: Any, listener: Any
        ) -> None:
            self.count += 1

    def build(plugin: object | None) -> Any:
        pm = dio.make_plugin_manager(load_entrypoints=False)
        if plugin is not None:
            pm.register(plugin)
        d = _dispatcher(dio, pm)
        d.register(_listener(dio, "target"))
        return d

    observer = Observer()
    dispatchers = {
        "bare": build(None),
        "unimplemented": build(TransportsOnly()),
        "observer": build(observer),
    }
    dispatchers["observer"].send_sync(dio.Message("ping", 1, destination="target"))
    if observer.count != 1:
        raise RuntimeError("observer hook dispatchio_message_delivered was not called")
    stats = bench_interleaved(
        {k: _send_loop(dio, d, "target") for k, d in dispatchers.items()}, cfg
    )
    return HookResult(stats["bare"], stats["unimplemented"], stats["observer"])
