"""Two live TcpTransports over real loopback sockets, in one test process."""

from __future__ import annotations

import ssl
from functools import partial

import anyio
import anyio.lowlevel
import pytest

from dispatchio import MessageTooLargeError, OutboxFullError, TransportConfigError, TransportError
from dispatchio.testing import RecordingHandler
from dispatchio.transport import PeerHello
from dispatchio_tcp import TcpTransport
from tests._transport_support import linked, send_until_outbox_full
from tests._transport_support import tls_contexts as shared_tls_contexts
from tests.tcp._tcp_support import raw_connect, raw_handshake, running, watching_logs

pytestmark = pytest.mark.anyio


async def test_handshake_reports_peer_up_on_both_sides() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await b.transport.connect(a.url)
            hello_a = await b.handler.wait_up("alpha")
            hello_b = await a.handler.wait_up("beta")
    assert hello_a == PeerHello("alpha", a.incarnation, a.urls)
    assert hello_b == PeerHello("beta", b.incarnation, b.urls)


async def test_serve_reports_the_port_actually_bound() -> None:
    with anyio.fail_after(5):
        async with running("alpha", listen=("tcp://127.0.0.1:0",)) as a:
            (url,) = a.urls
    assert url.startswith("tcp://127.0.0.1:")
    assert not url.endswith(":0")


async def test_peers_are_told_the_bound_urls_in_place_of_the_listen_specs() -> None:
    listen = ("tcp://127.0.0.1:0",)
    local = PeerHello("beta", 1, (*listen, "tcp://public.example:7400"))
    transport = TcpTransport()
    with anyio.fail_after(5):
        async with running("alpha") as a, anyio.create_task_group() as tg:
            bound = await tg.start(
                partial(transport.serve, RecordingHandler(), local, listen=listen)
            )
            await transport.connect(a.url)
            hello = await a.handler.wait_up("beta")
            await transport.aclose()
    assert hello.urls == (*bound, "tcp://public.example:7400")


async def test_listen_defaults_to_loopback() -> None:
    with anyio.fail_after(5):
        async with running("alpha", listen=("tcp://",)) as a:
            (url,) = a.urls
    assert url.startswith("tcp://127.0.0.1:")


async def test_ten_thousand_frames_arrive_in_order_both_ways() -> None:
    count = 10_000
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta") as b:
            await b.transport.connect(a.url)
            await b.handler.wait_up("alpha")
            await a.handler.wait_up("beta")
            for i in range(count):
                a.transport.send("beta", b"a%d" % i)
                b.transport.send("alpha", b"b%d" % i)
            to_b = await b.handler.wait_frames("alpha", count)
            to_a = await a.handler.wait_frames("beta", count)
    assert to_b == [b"a%d" % i for i in range(count)]
    assert to_a == [b"b%d" % i for i in range(count)]


async def test_frame_at_max_frame_size_passes() -> None:
    size = 64 * 1024
    payload = bytes(range(256)) * (size // 256)
    with anyio.fail_after(5):
        async with (
            running("alpha", max_frame_size=size) as a,
            running("beta", max_frame_size=size) as b,
        ):
            await b.transport.connect(a.url)
            await a.handler.wait_up("beta")
            a.transport.send("beta", payload)
            (received,) = await b.handler.wait_frames("alpha", 1)
    assert received == payload


async def test_frame_over_max_frame_size_is_refused_by_the_sender() -> None:
    size = 64 * 1024
    with anyio.fail_after(5):
        async with running("alpha", max_frame_size=size) as a, running("beta") as b:
            await b.transport.connect(a.url)
            await a.handler.wait_up("beta")
            with pytest.raises(MessageTooLargeError, match="65537 bytes exceeds max_frame_size"):
                a.transport.send("beta", bytes(size + 1))


async def test_outbox_overflow_raises_outbox_full_when_the_peer_stops_reading() -> None:
    with anyio.fail_after(10):
        async with running("alpha", max_outbox_bytes=64 * 1024) as a:
            stream = await raw_connect(a.url)
            async with stream:
                await raw_handshake(stream, "zz-stalled")  # then never reads again
                await a.handler.wait_up("zz-stalled")
                with pytest.raises(OutboxFullError, match="zz-stalled"):
                    await send_until_outbox_full(a.transport, "zz-stalled")


async def test_send_to_an_unknown_peer_raises_transport_error() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            with pytest.raises(TransportError, match="no tcp link to process 'nobody'"):
                a.transport.send("nobody", b"x")


async def test_send_after_close_raises_transport_error() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            await a.transport.aclose()
            with pytest.raises(TransportError, match="closed"):
                a.transport.send("beta", b"x")


async def test_connect_rejects_a_url_without_port() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            with pytest.raises(TransportConfigError, match="missing port"):
                await a.transport.connect("tcp://127.0.0.1")


async def test_connect_after_close_raises_transport_error() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            await a.transport.aclose()
            with pytest.raises(TransportError, match="closed"):
                await a.transport.connect("tcp://127.0.0.1:1")


async def test_binding_a_port_in_use_raises_transport_error_before_started() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            transport = TcpTransport()
            local = PeerHello("beta", 1, ())
            async with anyio.create_task_group() as tg:
                with pytest.raises(TransportError, match="cannot listen on"):
                    await tg.start(
                        partial(transport.serve, RecordingHandler(), local, listen=a.urls)
                    )


async def test_peer_down_when_the_peer_closes() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            async with running("beta") as b:
                await b.transport.connect(a.url)
                await a.handler.wait_up("beta")
            await a.handler.wait_down("beta")
    assert [process for process, _ in a.handler.downs] == ["beta"]


async def test_aclose_delivers_frames_already_accepted() -> None:
    count = 2_000
    with anyio.fail_after(5):
        async with running("alpha") as a:
            async with running("beta") as b:
                await b.transport.connect(a.url)
                await b.handler.wait_up("alpha")
                for i in range(count):
                    b.transport.send("alpha", b"%d" % i)
                await b.transport.aclose()
            received = await a.handler.wait_frames("beta", count)
    assert received == [b"%d" % i for i in range(count)]


async def test_cancelling_serve_closes_links_promptly() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            transport = TcpTransport()
            handler = RecordingHandler()
            async with anyio.create_task_group() as tg:
                await tg.start(
                    partial(transport.serve, handler, PeerHello("beta", 1, ()), listen=())
                )
                await transport.connect(a.url)
                await a.handler.wait_up("beta")
                await handler.wait_up("alpha")
                tg.cancel_scope.cancel()
            await a.handler.wait_down("beta")
    assert [process for process, _ in handler.downs] == ["alpha"]


async def test_reconnects_after_the_peer_restarts_on_the_same_port() -> None:
    with anyio.fail_after(10):
        async with running("beta") as b:
            async with running("alpha") as a1:
                url = a1.url
                await b.transport.connect(url)
                first = await b.handler.wait_up("alpha")
            await b.handler.wait_down("alpha")
            async with running("alpha", listen=(url,)) as a2:
                second = await b.handler.wait_up("alpha")
                b.transport.send("alpha", b"again")
                assert await a2.handler.wait_frames("beta", 1) == [b"again"]
    assert (first.incarnation, second.incarnation) == (a1.incarnation, a2.incarnation)


async def test_simultaneous_dials_keep_exactly_one_link() -> None:
    count = 1_000
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta") as b:
            await a.transport.connect(b.url)
            await linked(a, b)
            for i in range(count):
                a.transport.send("beta", b"%d" % i)
                b.transport.send("alpha", b"%d" % i)
            to_b = await b.handler.wait_frames("alpha", count)
            to_a = await a.handler.wait_frames("beta", count)
            assert (len(a.handler.ups), len(b.handler.ups)) == (1, 1)
            assert (a.handler.downs, b.handler.downs) == ([], [])
    assert to_a == to_b == [b"%d" % i for i in range(count)]


async def test_connecting_twice_to_one_url_is_harmless() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await b.transport.connect(a.url)
            await b.transport.connect(a.url)
            await b.handler.wait_up("alpha")
            b.transport.send("alpha", b"once")
            assert await a.handler.wait_frames("beta", 1) == [b"once"]
    assert len(b.handler.ups) == 1


async def test_wrong_secret_is_refused_and_logged_while_a_right_one_links() -> None:
    with anyio.fail_after(5):
        async with watching_logs() as logs, running("alpha", secret="right") as a:
            async with running("mallory", secret="wrong") as m:
                await m.transport.connect(a.url)
                message = await logs.wait_for("failed authentication")
            async with running("beta", secret="right") as b:
                await linked(a, b)
                b.transport.send("alpha", b"hello")
                assert await a.handler.wait_frames("beta", 1) == [b"hello"]
            assert [hello.process for hello in a.handler.ups] == ["beta"]
            assert m.handler.ups == []
    assert "right" not in message
    assert "wrong" not in message


async def test_peer_without_secret_is_refused_by_a_peer_with_one() -> None:
    with anyio.fail_after(5):
        async with watching_logs() as logs, running("alpha", secret="s") as a:
            async with running("beta") as b:
                await b.transport.connect(a.url)
                message = await logs.wait_for("has no secret")
            assert a.handler.ups == b.handler.ups == []
    assert "beta" in message


tls_contexts = pytest.fixture(shared_tls_contexts, name="tls_contexts")


async def test_tls_round_trip(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server, client = tls_contexts
    with anyio.fail_after(5):
        async with (
            running("alpha", ssl_context=server, ssl_client_context=client) as a,
            running("beta", ssl_context=server, ssl_client_context=client) as b,
        ):
            await linked(a, b)
            a.transport.send("beta", b"ping")
            assert await b.handler.wait_frames("alpha", 1) == [b"ping"]
            b.transport.send("alpha", b"pong")
            assert await a.handler.wait_frames("beta", 1) == [b"pong"]


async def test_plain_dialer_is_dropped_by_a_tls_listener(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = tls_contexts
    with anyio.fail_after(5):
        async with (
            watching_logs() as logs,
            running("alpha", ssl_context=server, ssl_client_context=client) as a,
        ):
            async with running("beta") as b:
                await b.transport.connect(a.url)
                await logs.wait_for("dropped connection from")
            assert a.handler.ups == b.handler.ups == []


async def test_a_secret_over_tls_links(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = tls_contexts
    with anyio.fail_after(5):
        async with (
            running("alpha", ssl_context=server, ssl_client_context=client, secret="s") as a,
            running("beta", ssl_context=server, ssl_client_context=client, secret="s") as b,
        ):
            await b.transport.connect(a.url)
            await a.handler.wait_up("beta")
            a.transport.send("beta", b"x")
            assert await b.handler.wait_frames("alpha", 1) == [b"x"]
