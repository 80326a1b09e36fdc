"""FaultProxy, one behaviour per test, over real loopback sockets on asyncio and trio.

Timing assertions here are lower bounds only (a delay is at least what was asked): load
can make the proxy slower, never faster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from dispatchio.testing import FaultProxy

pytestmark = pytest.mark.anyio

Serve = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def target(serve: Serve) -> AsyncIterator[str]:
    """A TCP server on loopback running ``serve`` per connection; yields its URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve, tg)
        yield f"tcp://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        try:
            async for chunk in stream:
                await stream.send(chunk)
        except anyio.BrokenResourceError:
            pass


async def receive_exactly(stream: anyio.abc.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive()
    return bytes(data)


async def connect(proxy: FaultProxy) -> anyio.abc.SocketStream:
    return await anyio.connect_tcp("127.0.0.1", proxy.port)


async def test_passes_bytes_both_ways_intact() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, more than the delay line holds
    with anyio.fail_after(10):
        async with target(echo) as url, FaultProxy(url) as proxy:
            async with await connect(proxy) as client, anyio.create_task_group() as tg:
                tg.start_soon(client.send, payload)
                assert await receive_exactly(client, len(payload)) == payload
            await proxy.wait_for(lambda s: s["open"] == 0)
            stats = proxy.stats()
    assert stats["accepted"] == 1
    assert stats["forwarded_to_target"] == stats["forwarded_to_client"] == len(payload)


async def test_listens_on_loopback_and_keeps_the_url_shape() -> None:
    async with FaultProxy("kafka://127.0.0.1:9/ns?x=1") as proxy:
        assert proxy.url == f"kafka://127.0.0.1:{proxy.port}/ns?x=1"
        assert proxy.port > 0
    async with FaultProxy("127.0.0.1:9") as proxy:
        assert proxy.url == f"127.0.0.1:{proxy.port}"


async def test_url_outside_async_with_raises() -> None:
    proxy = FaultProxy("tcp://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.url
    async with proxy:
        pass
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.port
    with pytest.raises(RuntimeError, match="only once"):
        await proxy.__aenter__()


@pytest.mark.parametrize(
    ("target_url", "match"),
    [("tcp://127.0.0.1", "host and a port"), ("tcp://:80", "host and a port"), ("h:x", "Port")],
)
def test_bad_target_raises_value_error(target_url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultProxy(target_url)


def test_bad_fault_arguments_raise_value_error() -> None:
    proxy = FaultProxy("tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match="finite"):
        proxy.set_latency(-0.1)
    with pytest.raises(ValueError, match="exceed"):
        proxy.set_latency(0.01, jitter=0.02)
    with pytest.raises(ValueError, match="> 0"):
        proxy.set_bandwidth(0)
    with pytest.raises(ValueError, match="direction"):
        proxy.blackhole("sideways")  # type: ignore[arg-type]


async def test_latency_delays_each_direction() -> None:
    with anyio.fail_after(10):
        async with target(echo) as url, FaultProxy(url) as proxy:
            proxy.set_latency(0.1)
            async with await connect(proxy) as client:
                start = anyio.current_time()
                await client.send(b"ping")
                assert await receive_exactly(client, 4) == b"ping"
                assert anyio.current_time() - start >= 0.2  # 0.1 s there, 0.1 s back


async def test_latency_on_one_direction_only() -> None:
    with anyio.fail_after(10):
        async with target(echo) as url, FaultProxy(url) as proxy:
            proxy.set_latency(0.2, direction="to_client")
            async with await connect(proxy) as client:
                start = anyio.current_time()
                await client.send(b"ping")
                await proxy.wait_for(lambda s: s["forwarded_to_target"] == 4)
                forwarded = anyio.current_time() - start
                assert await receive_exactly(client, 4) == b"ping"
                assert anyio.current_time() - start >= 0.2 > forwarded


async def test_jitter_keeps_order() -> None:
    chunks = [f"{i:04d}".encode() for i in range(100)]
    with anyio.fail_after(20):
        async with target(echo) as url, FaultProxy(url, seed=1) as proxy:
            proxy.set_latency(0.02, jitter=0.02)
            async with await connect(proxy) as client:
                for chunk in chunks:
                    await client.send(chunk)
                    await anyio.sleep(0.001)  # separate chunks, each with its own draw
                received = await receive_exactly(client, 400)
    assert received == b"".join(chunks)


async def test_bandwidth_limit_paces_the_bytes() -> None:
    size = 50_000
    with anyio.fail_after(20):
        async with target(echo) as url, FaultProxy(url) as proxy:
            proxy.set_bandwidth(100_000, direction="to_target")
            async with await connect(proxy) as client, anyio.create_task_group() as tg:
                start = anyio.current_time()
                tg.start_soon(client.send, b"x" * size)
                assert await receive_exactly(client, size) == b"x" * size
                # 50 kB at 100 kB/s; the first 20 ms slice goes at once.
                assert anyio.current_time() - start >= 0.45


async def test_blackhole_swallows_bytes_and_keeps_the_connection() -> None:
    with anyio.fail_after(10):
        async with target(echo) as url, FaultProxy(url) as proxy:
            async with await connect(proxy) as client:
                await client.send(b"hello")
                assert await receive_exactly(client, 5) == b"hello"
                proxy.blackhole()
                await client.send(b"lost")
                await proxy.wait_for(lambda s: s["dropped_to_target"] == 4)
                proxy.pass_through()
                await client.send(b"back")  # the same connection carries on
                assert await receive_exactly(client, 4) == b"back"
            stats = proxy.stats()
    assert stats["accepted"] == 1
    assert stats["reset"] == 0


async def test_blackhole_one_direction_only() -> None:
    got: list[bytes] = []
    received = anyio.Event()

    async def sink_then_talk(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"from target")
            async for chunk in stream:
                got.append(chunk)
                received.set()

    with anyio.fail_after(10):
        async with target(sink_then_talk) as url, FaultProxy(url) as proxy:
            proxy.blackhole("to_target")
            async with await connect(proxy) as client:
                assert await receive_exactly(client, 11) == b"from target"
                await client.send(b"swallowed")
                await proxy.wait_for(lambda s: s["dropped_to_target"] == 9)
                proxy.pass_through("to_target")
                await client.send(b"passes")
                await received.wait()
    assert got == [b"passes"]


async def test_blackhole_holds_a_fin_until_it_heals() -> None:
    ended = anyio.Event()

    async def wait_for_eof(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            async for _ in stream:
                pass
            ended.set()

    with anyio.fail_after(10):
        async with (
            target(wait_for_eof) as url,
            FaultProxy(url) as proxy,
            await connect(proxy) as client,
        ):
            await proxy.wait_for(lambda s: s["open"] == 1)
            proxy.blackhole()
            await client.send_eof()
            await proxy.wait_for(lambda s: s["eof_to_target"] == 1)
            # The proxy has read the FIN and holds it: the target still sees an open
            # connection until the network heals (a negative: given 0.2 s to fail).
            with anyio.move_on_after(0.2):
                await ended.wait()
            assert not ended.is_set()
            proxy.pass_through()
            await ended.wait()


async def test_reset_sends_rst_to_both_sides() -> None:
    target_error: list[BaseException] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await stream.receive()
            except (anyio.BrokenResourceError, anyio.EndOfStream) as exc:
                target_error.append(exc)

    with anyio.fail_after(10):
        async with target(hold) as url, FaultProxy(url) as proxy:
            async with await connect(proxy) as client:
                await proxy.wait_for(lambda s: s["open"] == 1)
                assert await proxy.reset() == 1
                with pytest.raises(anyio.BrokenResourceError):
                    await client.receive()
            async with await connect(proxy):  # new connections still pass
                await proxy.wait_for(lambda s: s["open"] == 1)
            stats = proxy.stats()
    assert [type(exc) for exc in target_error[:1]] == [anyio.BrokenResourceError]
    assert stats["reset"] == 1
    assert stats["accepted"] == 2


async def test_unreachable_target_resets_the_client() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there now
    with anyio.fail_after(10):
        async with FaultProxy(f"tcp://127.0.0.1:{port}") as proxy:
            async with await connect(proxy) as client:
                with pytest.raises(anyio.BrokenResourceError):
                    await client.receive()
            assert proxy.stats()["refused"] == 1


async def test_half_close_is_forwarded() -> None:
    async def reply_after_eof(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            async for chunk in stream:
                data += chunk
            await stream.send(b"got " + data)

    with anyio.fail_after(10):
        async with (
            target(reply_after_eof) as url,
            FaultProxy(url) as proxy,
            await connect(proxy) as client,
        ):
            await client.send(b"all")
            await client.send_eof()
            assert await receive_exactly(client, 7) == b"got all"
            with pytest.raises(anyio.EndOfStream):
                await client.receive()


async def test_aclose_closes_open_connections_and_is_idempotent() -> None:
    with anyio.fail_after(10):
        async with target(echo) as url:
            proxy = FaultProxy(url)
            async with proxy:
                client = await connect(proxy)
                await proxy.wait_for(lambda s: s["open"] == 1)
            await proxy.aclose()
            async with client:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await client.receive()
            assert proxy.stats()["open"] == 0
