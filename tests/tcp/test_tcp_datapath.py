"""The data path of a link: read-ahead, reassembly, failures, and the asyncio fast path."""

from __future__ import annotations

import asyncio
import contextvars
import random
import socket
import ssl
import struct

import anyio
import anyio.lowlevel
import pytest
import trustme
from anyio.abc import SocketAttribute

from dispatchio import ListenerId, OutboxFullError
from dispatchio.testing import RecordingHandler
from dispatchio_tcp import TcpTransport
from dispatchio_tcp._framing import goodbye
from tests._transport_support import linked
from tests.tcp._tcp_support import (
    Node,
    frame,
    raw_connect,
    raw_handshake,
    raw_handshake_rest,
    raw_hello,
    running,
    watching_logs,
)


def _uses_fast_path(node: Node, process: str) -> bool:
    return node.transport._links[process].fast is not None


@pytest.mark.anyio
async def test_frames_sent_in_the_same_write_as_the_hello_arrive() -> None:
    payloads = [b"first", b"second", bytes(1000)]
    with anyio.fail_after(5):
        async with running("alpha") as a, await raw_connect(a.url) as stream:
            await stream.send(raw_hello("zz-eager") + b"".join(map(frame, payloads)))
            await raw_handshake_rest(stream, "zz-eager")
            received = await a.handler.wait_frames("zz-eager", len(payloads))
    assert received == payloads


@pytest.mark.anyio
async def test_frames_split_at_random_points_arrive_whole_and_in_order() -> None:
    rng = random.Random(7)
    sizes = [rng.randrange(0, 2000) for _ in range(200)]
    sizes[50] = 700 * 1024  # larger than the receive ring: it must grow, then shrink
    sizes[120] = 300 * 1024
    payloads = [rng.randbytes(size) for size in sizes]
    wire = b"".join(map(frame, payloads))
    with anyio.fail_after(10):
        async with running("alpha") as a, await raw_connect(a.url) as stream:
            await raw_handshake(stream, "zz-chunked")
            pos = 0
            while pos < len(wire):
                step = rng.choice((1, 3, 4, 5, 100, 4096, 70_000, 300_000))
                await stream.send(wire[pos : pos + step])
                pos += step
            received = await a.handler.wait_frames("zz-chunked", len(payloads))
    assert received == payloads


@pytest.mark.anyio
async def test_a_burst_of_small_frames_larger_than_the_receive_buffer_arrives_in_order() -> None:
    rng = random.Random(11)
    payloads = [rng.randbytes(rng.randrange(0, 200)) for _ in range(20_000)]  # ~2 MB
    with anyio.fail_after(10):
        async with running("alpha") as a, await raw_connect(a.url) as stream:
            await raw_handshake(stream, "zz-burst")
            await stream.send(b"".join(map(frame, payloads)))  # one write
            received = await a.handler.wait_frames("zz-burst", len(payloads))
    assert received == payloads


@pytest.mark.anyio
async def test_frames_before_a_goodbye_arrive_then_the_link_ends() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, await raw_connect(a.url) as stream:
            await raw_handshake(stream, "zz-polite")
            await stream.send(frame(b"one") + frame(b"two") + goodbye())
            await a.handler.wait_down("zz-polite")
    assert a.handler.frames["zz-polite"] == [b"one", b"two"]
    assert a.handler.downs == [("zz-polite", "closed by the peer")]


@pytest.mark.anyio
async def test_a_reset_connection_reports_peer_down_exactly_once() -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a:
            stream = await raw_connect(a.url)
            await raw_handshake(stream, "zz-reset")
            await a.handler.wait_up("zz-reset")
            sock = stream.extra(SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()  # RST, not FIN
            await a.handler.wait_down("zz-reset")
    ((process, reason),) = a.handler.downs
    assert process == "zz-reset"
    assert reason.startswith("connection lost: ")


class _Fussy(RecordingHandler):
    """Raises on the frame ``b"boom"``."""

    def frame_received(self, process: ListenerId, frame: bytes) -> None:
        if frame == b"boom":
            raise ValueError("boom")
        super().frame_received(process, frame)


@pytest.mark.anyio
async def test_a_frame_handler_that_raises_is_logged_and_the_link_goes_on() -> None:
    # The frames of one read go to the handler in one call (frames_received): a handler
    # breaking its contract loses the rest of that read, never the link.
    with anyio.fail_after(5):
        async with (
            watching_logs() as logs,
            running("alpha", handler=_Fussy()) as a,
            running("beta") as b,
        ):
            await linked(a, b)
            for payload in (b"before", b"boom"):
                b.transport.send("alpha", payload)
            message = await logs.wait_for("frame handler failed")
            b.transport.send("alpha", b"after")
            received = await a.handler.wait_frames("beta", 2)
            assert a.handler.downs == []
    assert received == [b"before", b"after"]
    assert "'beta'" in message


@pytest.mark.anyio
async def test_sends_in_one_go_past_max_outbox_bytes_raise_and_the_rest_arrive() -> None:
    payload = bytes(1024)
    with anyio.fail_after(5):
        async with running("alpha", max_outbox_bytes=16 * 1024) as a, running("beta") as b:
            await linked(a, b)
            accepted = 0
            with pytest.raises(OutboxFullError, match="'beta'"):  # noqa: PT012
                for _ in range(100):  # no checkpoint: nothing leaves in between
                    a.transport.send("beta", payload)
                    accepted += 1
            a.transport.send("beta", b"last")
            received = await b.handler.wait_frames("alpha", accepted + 1)
    assert 10 <= accepted < 100
    assert received == [payload] * accepted + [b"last"]


@pytest.mark.anyio
async def test_plain_links_use_the_buffered_protocol_on_asyncio_only(anyio_backend: str) -> None:
    with anyio.fail_after(5):
        async with running("alpha") as a, running("beta") as b:
            await linked(a, b)
            fast = (_uses_fast_path(a, "beta"), _uses_fast_path(b, "alpha"))
    expected = anyio_backend == "asyncio"
    assert fast == (expected, expected)


@pytest.mark.anyio
async def test_tls_links_keep_the_stream_path() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    with anyio.fail_after(5):
        async with (
            running("alpha", ssl_context=server, ssl_client_context=client) as a,
            running("beta", ssl_context=server, ssl_client_context=client) as b,
        ):
            await linked(a, b)
            fast = (_uses_fast_path(a, "beta"), _uses_fast_path(b, "alpha"))
    assert fast == (False, False)


class _AskingTheClock(RecordingHandler):
    """Asks anyio for the time on every frame, which needs anyio to see the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def frame_received(self, process: ListenerId, frame: bytes) -> None:
        self.times.append(anyio.current_time())
        super().frame_received(process, frame)


def test_frame_handlers_can_use_anyio_under_plain_asyncio_run() -> None:
    handler = _AskingTheClock()

    async def main() -> list[bytes]:
        with anyio.fail_after(5):
            async with running("alpha", handler=handler) as a, running("beta") as b:
                await linked(a, b)
                b.transport.send("alpha", b"tick")
                return await a.handler.wait_frames("beta", 1)

    # A fresh context: nothing set by the anyio pytest plugin leaks in.
    received = contextvars.Context().run(asyncio.run, main())
    assert received == [b"tick"]
    assert len(handler.times) == 1


@pytest.mark.anyio
async def test_a_transport_closed_with_frames_held_in_this_pass_delivers_them() -> None:
    count = 500
    with anyio.fail_after(5):
        async with running("alpha") as a:
            transport: TcpTransport
            async with running("beta") as b:
                transport = b.transport
                await transport.connect(a.url)
                await b.handler.wait_up("alpha")
                for i in range(count):  # no checkpoint before aclose()
                    transport.send("alpha", b"%d" % i)
                await transport.aclose()
            received = await a.handler.wait_frames("beta", count)
            await anyio.lowlevel.checkpoint()
    assert received == [b"%d" % i for i in range(count)]
