"""`dispatchio.testing.RecordingHandler`: what it records, waiting on it, no dispatcher."""

from __future__ import annotations

import anyio
import pytest

from dispatchio.testing import RecordingHandler
from dispatchio.transport import PeerHello

pytestmark = pytest.mark.anyio


def test_dispatcher_raises_attribute_error_saying_there_is_none() -> None:
    with pytest.raises(AttributeError, match="RecordingHandler runs no dispatcher"):
        _ = RecordingHandler().dispatcher


async def test_records_each_call_and_wakes_a_waiter() -> None:
    handler = RecordingHandler()
    hello = PeerHello("b", 1, ("x://b",))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handler.wait_frames, "b", 3)
            handler.peer_up(hello)
            handler.frame_received("b", b"one")
            handler.frames_received("b", [b"two", b"three"])
            handler.dial_failed("x://c", "OSError: refused")
            assert await handler.wait_up("b") == hello
            handler.peer_down("b", "closed")
            await handler.wait_down("b")
    assert handler.ups == [hello]
    assert handler.up == {}
    assert handler.downs == [("b", "closed")]
    assert handler.frames == {"b": [b"one", b"two", b"three"]}
    assert handler.dial_errors == [("x://c", "OSError: refused")]
