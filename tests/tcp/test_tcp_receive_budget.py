"""Many linked peers each starting a large frame and stopping: memory stays within a budget."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest

from dispatchio_tcp._fastpath import RING_SIZE
from dispatchio_tcp._framing import FrameDecoder, FrameError, ReceiveBudget, encode_header
from tests.tcp._tcp_support import frame, raw_connect, raw_handshake, running, watching_logs

pytestmark = pytest.mark.anyio

_MAX_FRAME = 1 << 20
_BUDGET = 4 << 20
_PEERS = 100


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # asyncio: the fast path's receive ring; trio: the stream path's FrameDecoder.
    return str(request.param)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_header_alone_reserves_no_memory_for_its_frame() -> None:
    with anyio.fail_after(10):
        async with (
            running("alpha", max_frame_size=_MAX_FRAME) as receiver,
            await raw_connect(receiver.url) as stream,
        ):
            await raw_handshake(stream, "zz-big")
            await receiver.handler.wait_up("zz-big")
            # One write: a whole frame, then the start of one just under the limit.
            await stream.send(frame(b"first") + encode_header(_MAX_FRAME - 1) + b"x" * 1000)
            await receiver.handler.wait_frames("zz-big", 1)
            fast = receiver.transport._links["zz-big"].fast
            assert fast is not None
            assert len(fast.ring) == RING_SIZE
            assert receiver.transport.receive_budget.held == 0


async def test_incomplete_large_frames_across_links_stay_within_max_receive_bytes() -> None:
    with anyio.fail_after(60):
        async with (
            watching_logs() as logs,
            running("alpha", max_frame_size=_MAX_FRAME, max_receive_bytes=_BUDGET) as receiver,
            contextlib.AsyncExitStack() as stack,
        ):
            budget = receiver.transport.receive_budget
            before = rss_kib()
            streams = []
            for i in range(_PEERS):
                stream = await stack.enter_async_context(await raw_connect(receiver.url))
                await raw_handshake(stream, f"zz-big-{i:03}")
                streams.append(stream)
            await receiver.handler.wait(lambda: len(receiver.handler.up) == _PEERS)
            # Each announces a frame one byte under max_frame_size and sends 400 KiB of
            # it (past the 256 KiB ring), then stops.
            chunk = encode_header(_MAX_FRAME - 1) + b"x" * (400 * 1024)
            peak = 0
            for stream in streams:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(chunk)
            # Every link either holds its partial frame or was dropped for the budget.
            await receiver.handler.wait(lambda: len(receiver.handler.up) <= _BUDGET // (RING_SIZE))
            peak = max(peak, budget.held)
            after = rss_kib()
            dropped = _PEERS - len(receiver.handler.up)
            print(
                f"\n{_PEERS} links each 400 KiB into a {_MAX_FRAME}-byte frame, budget"
                f" {_BUDGET}: held {budget.held} bytes, {dropped} links dropped;"
                f" RSS {before} KiB -> {after} KiB"
            )
            assert budget.held <= _BUDGET
            assert dropped > 0
            assert any("max_receive_bytes" in m for m in logs.messages())
            # A well-behaved peer is still served.
            async with running("beta") as good:
                await good.transport.connect(receiver.url)
                await receiver.handler.wait_up("beta")
                await good.handler.wait_up("alpha")
                good.transport.send("alpha", b"ping")
                assert await receiver.handler.wait_frames("beta", 1) == [b"ping"]
        assert budget.held == 0


def test_the_stream_paths_decoder_grows_only_as_a_large_frame_arrives() -> None:
    decoder = FrameDecoder(_MAX_FRAME)
    start = decoder.capacity
    assert list(decoder.feed(encode_header(_MAX_FRAME - 1) + b"x" * 1000)) == []
    assert decoder.capacity == start
    assert list(decoder.feed(b"x" * (start * 2))) == []
    assert start * 2 < decoder.capacity <= start * 4
    rest = _MAX_FRAME - 1 - 1000 - start * 2
    (whole,) = decoder.feed(b"y" * rest)
    assert len(whole) == _MAX_FRAME - 1
    assert decoder.capacity == start  # back to its initial buffer once the frame is out


def test_the_stream_paths_decoders_share_one_budget() -> None:
    budget = ReceiveBudget(2 * _MAX_FRAME)
    first, second, third = (FrameDecoder(_MAX_FRAME, budget) for _ in range(3))
    start = first.capacity
    part = encode_header(_MAX_FRAME - 1) + b"x" * (3 * _MAX_FRAME // 4)
    assert list(first.feed(part)) == []
    assert budget.held == first.capacity - start > 0
    assert list(second.feed(part)) == []
    held = budget.held
    assert held == first.capacity + second.capacity - 2 * start <= budget.limit
    # A third would pass the budget: its link is refused, the others keep what they hold.
    with pytest.raises(FrameError, match="max_receive_bytes"):
        list(third.feed(part))
    assert third.finished
    assert budget.held == held
    # A frame completed gives its share back; so does a link that ends.
    (whole,) = first.feed(b"x" * (_MAX_FRAME - 1 - 3 * _MAX_FRAME // 4))
    assert len(whole) == _MAX_FRAME - 1
    assert budget.held == second.capacity - start
    second.release()
    second.release()  # idempotent
    assert budget.held == 0
