"""A live receiver fed truncated, oversized and random bytes while a good peer keeps working."""

from __future__ import annotations

import random

import anyio
import pytest

from tests.tcp._tcp_support import (
    Node,
    frame,
    raw_connect,
    raw_handshake,
    running,
    watching_logs,
)

pytestmark = pytest.mark.anyio


async def _round_trip(receiver: Node, peer: Node, tag: bytes) -> None:
    """One frame each way between the receiver and its well-behaved peer."""
    seen_by_receiver = len(receiver.handler.frames.get(peer.process, ()))
    seen_by_peer = len(peer.handler.frames.get(receiver.process, ()))
    peer.transport.send(receiver.process, tag)
    receiver.transport.send(peer.process, tag)
    got = await receiver.handler.wait_frames(peer.process, seen_by_receiver + 1)
    back = await peer.handler.wait_frames(receiver.process, seen_by_peer + 1)
    assert got[-1] == back[-1] == tag


async def test_hostile_connections_are_dropped_while_a_good_peer_keeps_working() -> None:
    rng = random.Random(1234)
    with anyio.fail_after(10):
        async with (
            watching_logs() as logs,
            running("alpha", max_frame_size=4096) as receiver,
            running("beta") as good,
        ):
            await good.transport.connect(receiver.url)
            await receiver.handler.wait_up("beta")
            await good.handler.wait_up("alpha")

            # 1. Random bytes instead of a handshake.
            for _ in range(5):
                async with await raw_connect(receiver.url) as stream:
                    await stream.send(rng.randbytes(rng.randrange(1, 300)))
                    await logs.wait_for("dropped connection from")
                    logs.records.clear()
                await _round_trip(receiver, good, b"after garbage")

            # 2. A frame length above max_frame_size, after a valid handshake.
            async with await raw_connect(receiver.url) as stream:
                await raw_handshake(stream, "zz-oversized")
                await receiver.handler.wait_up("zz-oversized")
                await stream.send(frame(b"ok") + (4097).to_bytes(4, "big") + b"x" * 100)
                await receiver.handler.wait_down("zz-oversized")
            assert receiver.handler.frames["zz-oversized"] == [b"ok"]
            await logs.wait_for("exceeds max_frame_size")
            await _round_trip(receiver, good, b"after oversized")

            # 3. A truncated frame, then the connection closes.
            async with await raw_connect(receiver.url) as stream:
                await raw_handshake(stream, "zz-truncated")
                await receiver.handler.wait_up("zz-truncated")
                await stream.send(frame(b"whole") + frame(b"cut short")[:7])
            await receiver.handler.wait_down("zz-truncated")
            assert receiver.handler.frames["zz-truncated"] == [b"whole"]
            await _round_trip(receiver, good, b"after truncated")

            # 4. Random bytes after a valid handshake.
            for i in range(5):
                process = f"zz-random-{i}"
                async with await raw_connect(receiver.url) as stream:
                    await raw_handshake(stream, process)
                    await receiver.handler.wait_up(process)
                    await stream.send(rng.randbytes(rng.randrange(1, 20_000)))
                await receiver.handler.wait_down(process)
                await _round_trip(receiver, good, b"after random %d" % i)

            # 5. A handshake claiming a hello far over the 4 KiB cap.
            async with await raw_connect(receiver.url) as stream:
                await stream.send(b"DSPT\x00\x01\xff\xff")
                await logs.wait_for("exceeds 4096")
            await _round_trip(receiver, good, b"after big hello")

            assert [hello.process for hello in good.handler.ups] == ["alpha"]
            assert good.handler.downs == []
            assert "beta" in receiver.handler.up


async def test_a_peer_of_another_protocol_version_is_refused() -> None:
    with anyio.fail_after(5):
        async with watching_logs() as logs, running("alpha") as receiver:
            async with await raw_connect(receiver.url) as stream:
                await stream.send(b"DSPT\x00\x02\x00\x02{}")
                message = await logs.wait_for("protocol version 2 is not supported")
            assert receiver.handler.ups == []
    assert "dropped connection from tcp://127.0.0.1:" in message


async def test_a_silent_peer_is_dropped_after_the_handshake_timeout() -> None:
    with anyio.fail_after(5):
        async with watching_logs() as logs, running("alpha", handshake_timeout=0.2) as receiver:
            async with await raw_connect(receiver.url):
                message = await logs.wait_for("did not finish its handshake")
            assert receiver.handler.ups == []
    assert message.startswith("closed a connection from tcp://127.0.0.1:")
    assert message.endswith(" that did not finish its handshake within 0.2 s")
