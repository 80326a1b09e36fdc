"""`TcpTransport.disconnect`: the core declared a peer gone, so its link is closed now."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import anyio
import anyio.abc
import pytest

from dispatchio import MessageDispatcher
from dispatchio_tcp._fastpath import RING_SIZE
from tests.tcp._tcp_support import raw_connect, raw_handshake, running

pytestmark = pytest.mark.anyio


async def _closed_by_the_other_side(stream: anyio.abc.SocketStream) -> None:
    """Return once the peer closed the connection (FIN or RST)."""
    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):  # noqa: PT012
        while True:
            await stream.receive()


async def test_disconnect_closes_the_socket_and_forgets_the_link() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, await raw_connect(a.url) as stream:
            await raw_handshake(stream, "zz-silent")
            await a.handler.wait_up("zz-silent")
            link = weakref.ref(a.transport._links["zz-silent"])
            a.transport.disconnect("zz-silent", "no frame for 3 s")
            assert "zz-silent" not in a.transport._links
            await _closed_by_the_other_side(stream)
            finished = link()
            assert finished is not None
            await finished.finished.wait()
            del finished
            gc.collect()
            assert link() is None  # nothing holds the link (nor its buffers) any more
            # The core asked for it: no peer_down comes back.
            assert a.handler.downs == []


async def test_a_dialer_redials_a_peer_it_disconnected() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta", reconnect_min=0.01) as b:
            await b.transport.connect(a.url)
            first = await a.handler.wait_up("beta")
            await b.handler.wait_up("alpha")
            b.transport.disconnect("alpha", "declared gone")
            await a.handler.wait(lambda: len(a.handler.ups) == 2)
            await b.handler.wait(lambda: len(b.handler.ups) == 2)
            b.transport.send("alpha", b"back")
            received = await a.handler.wait_frames("beta", 1)
            downs = [process for process, _ in a.handler.downs]
    assert a.handler.ups == [first, first]  # same incarnation, a new link
    assert downs == ["beta"]  # alpha saw the old link close
    assert received == [b"back"]


async def test_disconnecting_an_unknown_process_is_harmless() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await b.transport.connect(a.url)
            await a.handler.wait_up("beta")
            a.transport.disconnect("nobody", "never there")
            a.transport.disconnect("beta", "gone")
            a.transport.disconnect("beta", "gone twice")
            assert "beta" not in a.transport._links
        a.transport.disconnect("beta", "after close")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_disconnected_links_give_their_receive_buffers_back() -> None:
    count = 20
    tracemalloc.start()
    try:
        with anyio.fail_after(10):
            async with running("alpha") as a:
                streams = [await raw_connect(a.url) for _ in range(count)]
                for n, stream in enumerate(streams):
                    await raw_handshake(stream, f"zz-silent-{n}")
                await a.handler.wait(lambda: len(a.handler.up) == count)
                links = list(a.transport._links.values())
                assert all(link.fast is not None for link in links)
                held = tracemalloc.get_traced_memory()[0]
                for n in range(count):
                    a.transport.disconnect(f"zz-silent-{n}", "no frame for 3 s")
                for stream in streams:
                    await _closed_by_the_other_side(stream)
                    await stream.aclose()
                for link in links:
                    await link.finished.wait()
                del links
                gc.collect()
                released = held - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert released >= count * RING_SIZE


async def test_a_dispatcher_closes_the_socket_of_a_peer_that_went_silent() -> None:
    dispatcher = MessageDispatcher(
        "alpha",
        listen=["tcp://127.0.0.1:0"],
        heartbeat_interval=0.05,
        heartbeat_tolerance=3,
    )
    with anyio.fail_after(5):
        async with dispatcher, await raw_connect(dispatcher.listen_urls[0]) as stream:
            await raw_handshake(stream, "zz-silent")  # then never says a word
            await dispatcher.wait_for_peer("zz-silent", timeout=5)
            await _closed_by_the_other_side(stream)  # declared gone after ~0.15 s
            assert "zz-silent" not in dispatcher.peers
