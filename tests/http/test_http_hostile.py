"""A live receiver fed hostile HTTP and bad peer frames while a good peer keeps working."""

from __future__ import annotations

import contextlib
import random

import anyio
import pytest

from dispatchio_http._frames import BATCH_LIMIT
from tests._transport_support import linked, round_trip
from tests.http import _hostile
from tests.http._http_support import running, watching_logs

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _frames(*payloads: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in payloads)


@pytest.mark.parametrize(
    ("payload", "logged"),
    [
        (_hostile.ws_frame(_frames(b"ok") + (4097).to_bytes(4, "big") + b"x"), "exceeds max_frame"),
        (_hostile.ws_frame(_frames(b"ok") + (1000).to_bytes(4, "big") + b"cut"), "is cut off"),
        (_hostile.ws_frame(_frames(b"ok") + b"\x00\x00"), "header is cut off"),
        (_hostile.ws_frame(_frames(b"ok")) + _hostile.ws_frame(b"text", opcode=1), "text message"),
        (
            _hostile.ws_frame(_frames(b"ok")) + _hostile.ws_frame(b"", declared=1 << 40)[:14],
            "Message size 1099511627776 exceeds limit",  # refused from its header alone
        ),
    ],
    ids=["over-cap", "cut-frame", "cut-header", "text", "huge-message"],
)
async def test_a_bad_frame_drops_only_that_link_after_the_whole_frames_before_it(
    payload: bytes, logged: str
) -> None:
    with anyio.fail_after(10):
        async with (
            watching_logs() as logs,
            running("alpha", max_frame_size=4096) as receiver,
            running("beta") as good,
        ):
            await linked(receiver, good)
            await _hostile.hostile_peer(receiver.url, "zz-bad", payload)
            await receiver.handler.wait(lambda: len(receiver.handler.downs) == 1)
            await round_trip(receiver, good, b"still here")
    assert receiver.handler.frames["zz-bad"] == [b"ok"]
    process, reason = receiver.handler.downs[0]
    assert process == "zz-bad"
    assert reason.startswith("protocol error: ")
    assert logged in reason
    assert f"dropped the link to process 'zz-bad': {reason[16:]}" in logs.messages()


async def test_random_bytes_on_a_linked_socket_drop_it() -> None:
    rng = random.Random(99)
    with anyio.fail_after(10):
        async with running("alpha") as receiver, running("beta") as good:
            await linked(receiver, good)
            for i in range(5):
                process = f"zz-random-{i}"
                await _hostile.hostile_peer(receiver.url, process, rng.randbytes(5000))
                await receiver.handler.wait_down(process)
                assert process in [hello.process for hello in receiver.handler.ups]
                await round_trip(receiver, good, b"after random %d" % i)


async def test_the_whole_hostile_http_barrage_leaves_the_receiver_serving() -> None:
    with anyio.fail_after(20):
        async with (
            running("alpha", header_timeout=0.5) as receiver,
            running("beta") as good,
        ):
            await linked(receiver, good)
            await _hostile.send_hostile_http(receiver.url, max_frame_size=1 << 20, linger=1.0)
            await round_trip(receiver, good, b"after the barrage")
    # Every link the barrage opened was dropped; the good peer's link never was.
    downs = [process for process, _ in receiver.handler.downs]
    assert downs[-1] == "beta"  # only when the block ended
    assert "beta" not in downs[:-1]


async def test_large_frames_half_sent_over_many_links_stay_within_max_receive_bytes() -> None:
    max_frame, budget_limit, peers = 1 << 20, 2 << 20, 40
    # Each link sends the first message of a frame one byte under max_frame_size and
    # 144 KiB of its continuation (400 KiB of it in all), then stops.
    start = (max_frame - 1).to_bytes(4, "big") + bytes(BATCH_LIMIT - 4)
    part = _hostile.ws_frame(start) + _hostile.ws_frame(bytes(144 * 1024))
    with anyio.fail_after(30):
        async with (
            watching_logs() as logs,
            running("alpha", max_frame_size=max_frame, max_receive_bytes=budget_limit) as receiver,
            running("beta") as good,
            contextlib.AsyncExitStack() as stack,
        ):
            await linked(receiver, good)
            budget = receiver.transport.receive_budget
            for i in range(peers):
                status, _, stream = await _hostile.peer_upgrade(
                    receiver.url, _hostile.peer_hello(f"zz-big-{i:02}")
                )
                assert status == 101
                await stack.enter_async_context(stream)
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(part)
            held_per_link = BATCH_LIMIT - 4 + 144 * 1024
            kept = budget_limit // held_per_link
            await receiver.handler.wait(lambda: len(receiver.handler.downs) == peers - kept)
            await receiver.handler.wait(lambda: budget.held == kept * held_per_link)
            assert all("max_receive_bytes" in reason for _, reason in receiver.handler.downs)
            assert any("max_receive_bytes" in m for m in logs.messages())
            await round_trip(receiver, good, b"still served")
            await stack.aclose()  # the links that were kept end: what they held returns
            await receiver.handler.wait(lambda: len(receiver.handler.downs) == peers)
            assert budget.held == 0
