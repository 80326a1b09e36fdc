"""`HttpTransport.disconnect`: the core declared a peer gone, so its link is closed now."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from tests.http._hostile import peer_hello, peer_upgrade
from tests.http._http_support import linked, running

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _closed_by_the_other_side(stream: anyio.abc.SocketStream) -> None:
    """Return once the peer closed the connection (FIN or RST)."""
    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError)):  # noqa: PT012
        while True:
            await stream.receive()


async def test_disconnect_aborts_the_connection_and_forgets_the_link() -> None:
    with anyio.fail_after(5):
        async with running("alpha", max_outbox_bytes=1 << 20) as a:
            status, _, stream = await peer_upgrade(a.url, peer_hello("zz-frozen"))
            async with stream:  # never reads: a peer frozen with SIGSTOP
                assert status == 101
                await a.handler.wait_up("zz-frozen")
                link = a.transport._links["zz-frozen"]
                for _ in range(32):
                    a.transport.send("zz-frozen", bytes(16 * 1024))  # queued, unsent
                a.transport.disconnect("zz-frozen", "no frame for 0.6 s")
                assert "zz-frozen" not in a.transport._links
                # Dropped here and now: the outbox, and what asyncio buffered unsent.
                assert (link.outbox, link.outbox_bytes) == ([], 0)
                assert link.socket is not None
                assert link.socket.is_closing()
                assert link.socket.get_write_buffer_size() == 0
                await _closed_by_the_other_side(stream)
                await link.finished.wait()
    # The core asked for it: no peer_down comes back.
    assert [process for process, _ in a.handler.downs] == []


@pytest.mark.parametrize("side", ["dialer", "dialed"])
async def test_the_dialer_redials_after_a_disconnect_on_either_side(side: str) -> None:
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta", reconnect_min=0.01) as b:
            await linked(a, b)  # beta dialed alpha
            first = a.handler.ups[0]
            if side == "dialer":
                # aiohttp's client connection was found, so it can be aborted.
                assert b.transport._links["alpha"].socket is not None
                b.transport.disconnect("alpha", "declared gone")
            else:
                a.transport.disconnect("beta", "declared gone")
            await a.handler.wait(lambda: len(a.handler.ups) == 2)
            await b.handler.wait(lambda: len(b.handler.ups) == 2)
            b.transport.send("alpha", b"back")
            received = await a.handler.wait_frames("beta", 1)
    assert a.handler.ups == [first, first]  # same incarnation, a new link
    assert received == [b"back"]


async def test_disconnecting_an_unknown_process_is_harmless() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
            a.transport.disconnect("nobody", "never there")
            a.transport.disconnect("beta", "gone")
            a.transport.disconnect("beta", "gone twice")
            assert "beta" not in a.transport._links
        a.transport.disconnect("beta", "after close")
