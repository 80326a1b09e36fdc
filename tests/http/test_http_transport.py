"""Live HttpTransports over real loopback sockets, in one test process (asyncio)."""

from __future__ import annotations

import logging
import socket
from functools import partial
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest

from dispatchio import MessageTooLargeError, OutboxFullError, TransportConfigError, TransportError
from dispatchio.testing import RecordingHandler
from dispatchio.transport import PeerHello
from dispatchio_http import HttpsTransport, HttpTransport
from dispatchio_http._frames import BATCH_LIMIT
from tests._transport_support import linked, send_until_outbox_full, tls_contexts
from tests.http._hostile import peer_hello, peer_upgrade
from tests.http._http_support import running, watching_logs

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_dial_reports_peer_up_on_both_sides_with_the_bound_urls() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
    assert a.handler.ups == [PeerHello("beta", b.incarnation, b.urls)]
    assert b.handler.ups == [PeerHello("alpha", a.incarnation, a.urls)]


async def test_no_host_binds_loopback_and_port_zero_is_resolved() -> None:
    with anyio.fail_after(5):
        async with running("alpha", listen=("http://:0",)) as a:
            (url,) = a.urls
    assert url.startswith("http://127.0.0.1:")
    assert not url.endswith(":0")


async def test_a_prefix_is_kept_in_the_bound_url_and_peers_link_through_it() -> None:
    with anyio.fail_after(5):
        async with (
            running("alpha", listen=("http://127.0.0.1:0/mesh/one/",)) as a,
            running("beta") as b,
        ):
            await linked(a, b)
    assert a.url.endswith("/mesh/one")


async def test_peers_are_told_the_bound_urls_in_place_of_the_listen_specs() -> None:
    listen = ("http://127.0.0.1:0",)
    local = PeerHello("beta", 1, (*listen, "http://public.example:7400"))
    transport = HttpTransport(gateway=False)
    with anyio.fail_after(5):
        async with running("alpha") as a, anyio.create_task_group() as tg:
            bound = await tg.start(
                partial(transport.serve, RecordingHandler(), local, listen=listen)
            )
            await transport.connect(a.url)
            hello = await a.handler.wait_up("beta")
            await transport.aclose()
    assert hello.urls == (*bound, "http://public.example:7400")


async def test_ten_thousand_frames_arrive_in_order_both_ways() -> None:
    count = 10_000
    with anyio.fail_after(20):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
            for i in range(count):
                a.transport.send("beta", b"a%d" % i)
                b.transport.send("alpha", b"b%d" % i)
            to_b = await b.handler.wait_frames("alpha", count)
            to_a = await a.handler.wait_frames("beta", count)
    assert to_b == [b"a%d" % i for i in range(count)]
    assert to_a == [b"b%d" % i for i in range(count)]


async def test_a_burst_larger_than_one_message_is_split_and_stays_in_order() -> None:
    payloads = [bytes([i % 256]) * (9000 + i) for i in range(3 * BATCH_LIMIT // 9000)]
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
            for payload in payloads:
                a.transport.send("beta", payload)
            received = await b.handler.wait_frames("alpha", len(payloads))
    assert received == payloads


async def test_a_frame_at_max_frame_size_passes() -> None:
    size = 512 * 1024  # larger than one message: cut into three, reassembled
    payload = bytes(range(256)) * (size // 256)
    with anyio.fail_after(5):
        async with (
            running("alpha", max_frame_size=size) as a,
            running("beta", max_frame_size=size) as b,
        ):
            await linked(a, b)
            a.transport.send("beta", b"before")
            a.transport.send("beta", payload)
            a.transport.send("beta", b"after")
            received = await b.handler.wait_frames("alpha", 3)
    assert received == [b"before", payload, b"after"]


async def test_a_frame_over_max_frame_size_is_refused_by_the_sender() -> None:
    size = 64 * 1024
    with anyio.fail_after(5):
        async with running("alpha", max_frame_size=size) as a, running("beta") as b:
            await linked(a, b)
            with pytest.raises(MessageTooLargeError, match="65537 bytes exceeds max_frame_size"):
                a.transport.send("beta", bytes(size + 1))


async def test_a_peer_sending_a_frame_over_the_receivers_cap_loses_its_link() -> None:
    with anyio.fail_after(5):
        async with (
            watching_logs() as logs,
            running("alpha", max_frame_size=4096) as a,
            running("beta", max_frame_size=65536) as b,
        ):
            await linked(a, b)
            b.transport.send("alpha", b"small")
            b.transport.send("alpha", bytes(5000))
            await a.handler.wait_down("beta")
            await logs.wait_for("exceeds max_frame_size 4096")
    assert a.handler.frames["beta"] == [b"small"]


async def test_outbox_overflow_raises_outbox_full_when_the_peer_stops_reading() -> None:
    with anyio.fail_after(10):
        async with running("alpha", max_outbox_bytes=256 * 1024) as a:
            status, _, stream = await peer_upgrade(a.url, peer_hello("zz-stalled"))
            async with stream:  # linked, then never reads again
                assert status == 101
                await a.handler.wait_up("zz-stalled")
                with pytest.raises(OutboxFullError, match="zz-stalled"):
                    await send_until_outbox_full(a.transport, "zz-stalled")


async def test_send_to_an_unknown_peer_raises_transport_error() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            with pytest.raises(TransportError, match="no http link to process 'nobody'"):
                a.transport.send("nobody", b"x")


async def test_send_after_close_raises_transport_error() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
            await a.transport.aclose()
            with pytest.raises(TransportError, match="closed"):
                a.transport.send("beta", b"x")


async def test_close_flushes_accepted_frames_before_the_link_goes_down() -> None:
    count = 2000
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
            for i in range(count):
                a.transport.send("beta", b"%d" % i)
            await a.transport.aclose()
            await b.handler.wait_down("alpha")
    assert b.handler.frames["alpha"] == [b"%d" % i for i in range(count)]


async def test_both_dialing_each_other_ends_with_one_link_that_carries_frames() -> None:
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta") as b:
            await a.transport.connect(b.url)
            await linked(a, b)
            for i in range(100):
                a.transport.send("beta", b"%d" % i)
            received = await b.handler.wait_frames("alpha", 100)
    assert received == [b"%d" % i for i in range(100)]
    assert [hello.process for hello in a.handler.ups] == ["beta"]
    assert [hello.process for hello in b.handler.ups] == ["alpha"]


async def test_the_dialer_reconnects_when_the_server_comes_back_on_its_port() -> None:
    with anyio.fail_after(15):
        async with running("beta", reconnect_min=0.05, reconnect_max=0.2) as b:
            async with running("alpha") as a:
                await linked(a, b)
                url = a.url
            await b.handler.wait_down("alpha")
            async with running("alpha", listen=(url,)) as again:
                await b.handler.wait_up("alpha")
                b.transport.send("alpha", b"welcome back")
                assert await again.handler.wait_frames("beta", 1) == [b"welcome back"]
    assert [hello.incarnation for hello in b.handler.ups] == [a.incarnation, again.incarnation]


async def test_a_dialer_keeps_trying_until_the_server_starts() -> None:
    # A free port, then nothing listening on it for a while: the dial backs off and retries.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with anyio.fail_after(10):
        async with running("beta", reconnect_min=0.05, reconnect_max=0.2) as b:
            await b.transport.connect(url)
            async with running("alpha", listen=(url,)) as a:
                await b.handler.wait_up("alpha")
                await a.handler.wait_up("beta")
                b.transport.send("alpha", b"late but there")
                assert await a.handler.wait_frames("beta", 1) == [b"late but there"]


async def test_a_killed_link_is_reported_down_and_redialed() -> None:
    with anyio.fail_after(10):
        async with running("alpha") as a, running("beta", reconnect_min=0.05) as b:
            await linked(a, b)
            first = a.handler.ups[-1]
            a.transport._links["beta"].abort("killed by the test")
            await b.handler.wait(lambda: len(b.handler.downs) == 1)
            await b.handler.wait(lambda: len(b.handler.ups) == 2)
            await a.handler.wait(lambda: len(a.handler.ups) == 2)
            b.transport.send("alpha", b"again")
            assert await a.handler.wait_frames("beta", 1) == [b"again"]
    assert a.handler.ups[-1] == first


# --------------------------------------------------------------------- tokens


async def test_peers_with_the_same_token_link() -> None:
    with anyio.fail_after(5):
        async with running("alpha", token="s3cret") as a, running("beta", token="s3cret") as b:
            await linked(a, b)
            b.transport.send("alpha", b"authenticated")
            assert await a.handler.wait_frames("beta", 1) == [b"authenticated"]


async def test_a_wrong_token_is_refused_and_logged_without_the_token() -> None:
    with anyio.fail_after(10):
        async with watching_logs() as logs, running("alpha", token="right-token") as a:
            async with running("mallory", token="wrong-token") as m:
                await m.transport.connect(a.url)
                message = await logs.wait_for("refused the link")
            async with running("beta", token="right-token") as b:
                await linked(a, b)
    assert "wrong token" in message
    assert "mallory" not in a.handler.up
    assert [h.process for h in a.handler.ups] == ["beta"]
    texts = [r.getMessage() for r in logs.records]
    assert not [t for t in texts if "right-token" in t or "wrong-token" in t]


async def test_a_dialer_without_a_token_is_told_one_is_required() -> None:
    with anyio.fail_after(10):
        async with watching_logs() as logs, running("alpha", token="t") as a, running("beta") as b:
            await b.transport.connect(a.url)
            message = await logs.wait_for("refused the link")
    assert "it requires a token" in message


async def test_a_server_that_cannot_prove_the_token_is_dropped_by_the_dialer() -> None:
    with anyio.fail_after(10):
        async with watching_logs() as logs, running("alpha") as a:  # no token at all
            async with running("beta", token="t") as b:
                await b.transport.connect(a.url)
                message = await logs.wait_for("failed authentication")
            # alpha accepted (it asks for nothing), then beta closed at once.
            await a.handler.wait(lambda: "beta" not in a.handler.up)
    assert "'alpha'" in message
    assert "alpha" not in b.handler.up


async def test_the_token_is_not_in_the_repr_of_the_options() -> None:
    transport = HttpTransport(token="hunter2")
    assert "hunter2" not in repr(transport.options)


# --------------------------------------------------------------------- TLS


async def test_https_round_trip() -> None:
    server, client = tls_contexts()
    tls: dict[str, Any] = {"ssl_context": server, "ssl_client_context": client}
    with anyio.fail_after(10):
        async with (
            running("alpha", listen=("https://127.0.0.1:0",), **tls) as a,
            running("beta", listen=("https://127.0.0.1:0",), **tls) as b,
        ):
            assert a.url.startswith("https://127.0.0.1:")
            await linked(a, b)
            b.transport.send("alpha", b"over tls")
            assert await a.handler.wait_frames("beta", 1) == [b"over tls"]


async def test_https_with_token_over_tls() -> None:
    server, client = tls_contexts()
    tls: dict[str, Any] = {"ssl_context": server, "ssl_client_context": client, "token": "t"}
    with anyio.fail_after(10):
        async with (
            running("alpha", listen=("https://127.0.0.1:0",), **tls) as a,
            running("beta", listen=(), **tls) as b,
        ):
            await linked(a, b)
            a.transport.send("beta", b"private")
            assert await b.handler.wait_frames("alpha", 1) == [b"private"]


async def test_an_untrusted_certificate_is_refused_and_logged() -> None:
    server, _ = tls_contexts()
    _, other_client = tls_contexts()  # trusts another CA
    with anyio.fail_after(10):
        async with (
            watching_logs() as logs,
            running("alpha", listen=("https://127.0.0.1:0",), ssl_context=server) as a,
            running("beta", listen=(), ssl_client_context=other_client) as b,
        ):
            await b.transport.connect(a.url)
            message = await logs.wait_for("dialing")
    assert "certificate" in message.lower()
    assert "alpha" not in b.handler.up


async def test_http_urls_with_an_ssl_context_are_refused() -> None:
    server, _ = tls_contexts()
    with pytest.raises(TransportConfigError, match=r"need https:// URLs"):
        HttpTransport(ssl_context=server)


async def test_https_listening_without_an_ssl_context_is_refused() -> None:
    transport = HttpsTransport()
    with pytest.raises(TransportConfigError, match="needs the ssl_context option"):
        await transport.serve(
            RecordingHandler(), PeerHello("a", 1, ()), listen=["https://127.0.0.1:0"]
        )


# --------------------------------------------------------------------- misc


async def test_a_raw_aiohttp_client_cannot_link_without_a_hello() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(a.url + "/v1/peer")
    assert info.value.status == 400


async def test_binding_a_taken_port_is_a_transport_error() -> None:
    transport = HttpTransport(gateway=False)
    with anyio.fail_after(5):
        async with running("alpha") as a:
            with pytest.raises(TransportError, match="cannot listen on"):
                await transport.serve(RecordingHandler(), PeerHello("b", 1, ()), listen=[a.url])


async def test_logs_name_links_going_up_and_down() -> None:
    with anyio.fail_after(5):
        async with watching_logs() as logs, running("alpha") as a, running("beta") as b:
            await linked(a, b)
    infos = logs.messages(logging.INFO)
    assert "link to process 'beta' is up" in infos
    assert any(text.startswith("link to process 'beta' is down") for text in infos)


@pytest.mark.anyio
async def test_each_failed_dial_is_reported_to_the_handler_with_its_error() -> None:
    # A bound socket that never listens: every dial is refused while the test runs.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{placeholder.getsockname()[1]}"
        with anyio.fail_after(5):
            async with running("alpha", reconnect_min=0.01, reconnect_max=0.02) as a:
                await a.transport.connect(url)
                await a.handler.wait(lambda: len(a.handler.dial_errors) >= 2)
    for dialed, error in a.handler.dial_errors:
        assert dialed == url
        assert "Connect call failed" in error or "refused" in error.lower()
